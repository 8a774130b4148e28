//! Signatures and the parsing they depend on.
//!
//! This module checks every HMAC that revurb has to verify:
//!
//! * private and presence channel subscriptions (`auth` = `"<key>:<hex hmac>"` over
//!   `"<socket_id>:<channel>[:<channel_data>]"`);
//! * Pusher user authentication (`pusher:signin`, HMAC over `"<socket_id>::user::<user_data>"`);
//! * signed HTTP API requests (Pusher's `auth_key` / `auth_timestamp` / `auth_signature` scheme:
//!   the signed string is every query parameter the client sent but `auth_signature`, and a
//!   `body_md5` must match the body).
//!
//! It follows Laravel Reverb's rules with revurb's port decisions on top: the `key:` part of a
//! channel or user `auth` must be the app key, the HTTP API `auth_key` must be the app key, and
//! `auth_timestamp` must be within [`TIMESTAMP_WINDOW_SECS`] of the server clock.
//!
//! It also holds the PHP-compatible query-string decoding ([`url_decode`], [`parse_query`]) that
//! the signature check needs, and the client side of the API signature ([`sign_api_request`]),
//! used by tests and by the load generator.

use std::collections::HashMap;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Maximum number of non-empty `&`-separated pieces [`parse_query`] looks at (PHP's default
/// `max_input_vars`). Anything after that is ignored.
const MAX_QUERY_PAIRS: usize = 1000;

/// Allowed distance, in seconds, between an API request's `auth_timestamp` and the server clock.
pub const TIMESTAMP_WINDOW_SECS: i64 = 600;

// ---------------------------------------------------------------------------------------------
// HMAC and comparison
// ---------------------------------------------------------------------------------------------

/// Raw HMAC-SHA256, or `None` if the MAC could not be keyed (HMAC takes keys of any length, so
/// this does not happen in practice; callers treat `None` as "does not match").
fn hmac_sha256(secret: &[u8], message: &[u8]) -> Option<Vec<u8>> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).ok()?;
    mac.update(message);
    Some(mac.finalize().into_bytes().to_vec())
}

/// Lower-case hex HMAC-SHA256.
pub fn hmac_sha256_hex(secret: &[u8], message: &[u8]) -> String {
    hmac_sha256(secret, message)
        .map(hex::encode)
        .unwrap_or_default()
}

/// Constant-time equality (length difference may return early).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Compares a client-supplied hex signature with the HMAC of `message`, in constant time.
/// An empty expected value (unkeyable MAC) never matches.
fn signature_matches(secret: &[u8], message: &[u8], given: &str) -> bool {
    let expected = hmac_sha256_hex(secret, message);
    !expected.is_empty() && constant_time_eq(expected.as_bytes(), given.as_bytes())
}

/// Splits `"<key>:<signature>"` at the first `:` and checks the key part. Returns the signature
/// part, or `None` when there is no colon or the key is not `app_key`.
fn split_key_prefixed<'a>(app_key: &str, auth: &'a str) -> Option<&'a str> {
    let (key, signature) = auth.split_once(':')?;
    (key == app_key).then_some(signature)
}

// ---------------------------------------------------------------------------------------------
// WebSocket auth
// ---------------------------------------------------------------------------------------------

/// Private/presence channel auth. `auth` is `"<key>:<hex hmac>"`; the part before the FIRST ':'
/// must equal app_key (port decision), the rest is compared in constant time with
/// `HMAC(secret, "<socket_id>:<channel>")` or, when channel_data is Some and non-empty,
/// `"<socket_id>:<channel>:<channel_data>"` using the raw channel_data string.
/// None/empty/no-colon auth -> false.
pub fn verify_channel_auth(
    app_key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    auth: Option<&str>,
) -> bool {
    let Some(auth) = auth.filter(|a| !a.is_empty()) else {
        return false;
    };
    let Some(signature) = split_key_prefixed(app_key, auth) else {
        return false;
    };
    let mut message = format!("{socket_id}:{channel}");
    if let Some(data) = channel_data.filter(|d| !d.is_empty()) {
        message.push(':');
        message.push_str(data);
    }
    signature_matches(secret.as_bytes(), message.as_bytes(), signature)
}

/// Pusher user authentication (pusher:signin): HMAC(secret, "<socket_id>::user::<user_data>"),
/// same "key:" prefix rule.
pub fn verify_user_auth(
    app_key: &str,
    secret: &str,
    socket_id: &str,
    user_data: &str,
    auth: &str,
) -> bool {
    if auth.is_empty() {
        return false;
    }
    let Some(signature) = split_key_prefixed(app_key, auth) else {
        return false;
    };
    let message = format!("{socket_id}::user::{user_data}");
    signature_matches(secret.as_bytes(), message.as_bytes(), signature)
}

// ---------------------------------------------------------------------------------------------
// Query strings
// ---------------------------------------------------------------------------------------------

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding as PHP urldecode: '+' -> ' ', %XX -> byte; invalid escapes kept literally;
/// result lossy UTF-8.
pub fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push((hi << 4) | lo);
                    i += 3;
                } else {
                    out.push(b'%');
                    i += 1;
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encoding as PHP rawurlencode: everything but `A-Z a-z 0-9 - _ . ~` becomes `%XX`.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// How a decoded query key is stored, following PHP's variable registration.
enum KeyTarget {
    /// `name=v`
    Plain(String),
    /// `name[]=v` (index `None`) or `name[idx]=v`
    Array(String, Option<String>),
}

/// Applies PHP's key rules to an already-decoded key: leading spaces dropped; in the base name
/// ' ' and '.' become '_'; `name[idx]` is an array element (only the first bracket group counts;
/// an index of "" or " " appends); a '[' with no ']' after it becomes '_' and the rest is kept.
/// Returns `None` for an empty base name (PHP drops those).
fn classify_key(key: &str) -> Option<KeyTarget> {
    let key = key.trim_start_matches(' ');
    let mut base = String::with_capacity(key.len());
    for (pos, c) in key.char_indices() {
        match c {
            ' ' | '.' => base.push('_'),
            '[' => {
                if base.is_empty() {
                    return None;
                }
                let rest = key.get(pos + 1..).unwrap_or("");
                return Some(match rest.find(']') {
                    Some(end) => {
                        let index = rest.get(..end).unwrap_or("");
                        let index = (!index.is_empty() && index != " ").then(|| index.to_owned());
                        KeyTarget::Array(base, index)
                    }
                    None => {
                        base.push('_');
                        base.push_str(rest);
                        KeyTarget::Plain(base)
                    }
                });
            }
            _ => base.push(c),
        }
    }
    if base.is_empty() {
        None
    } else {
        Some(KeyTarget::Plain(base))
    }
}

/// A PHP array element key that PHP would store as an integer ("0", "-3", "17", not "01").
fn php_int_key(index: &str) -> Option<i64> {
    let digits = index.strip_prefix('-').unwrap_or(index);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && index != "-0";
    if canonical { index.parse().ok() } else { None }
}

/// One parsed query variable.
enum QueryValue {
    Scalar(String),
    /// Ordered elements (key, value) plus PHP's next free integer index.
    Array(Vec<(String, String)>, i64),
}

/// Parse a raw query string ("a=1&b=x%20y") into decoded (key, value) pairs, PHP parse_str style:
/// empty pieces skipped; a key without '=' has value ""; in keys '.' and ' ' become '_';
/// `a[]=x&a[]=y` becomes one pair ("a", "x,y") (values joined with ',' in order, key without
/// "[]"). If a key repeats without [] the LAST value wins (PHP). Bound the work: at most 1000
/// pairs, the rest ignored.
///
/// Pairs come out in order of each key's first appearance (PHP array order). `a[x]=1&a[y]=2`
/// also gives ("a", "1,2"); a repeated `a[x]` overwrites its element; deeper brackets
/// (`a[x][y]`) are treated as `a[x]`.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    let mut order: Vec<(String, QueryValue)> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();

    for piece in raw
        .split('&')
        .filter(|p| !p.is_empty())
        .take(MAX_QUERY_PAIRS)
    {
        let (raw_key, raw_value) = piece.split_once('=').unwrap_or((piece, ""));
        let Some(target) = classify_key(&url_decode(raw_key)) else {
            continue;
        };
        let value = url_decode(raw_value);
        let (name, index) = match target {
            KeyTarget::Plain(name) => (name, None),
            KeyTarget::Array(name, index) => (name, Some(index)),
        };
        let slot = match position.get(&name) {
            Some(&i) => i,
            None => {
                position.insert(name.clone(), order.len());
                order.push((name, QueryValue::Array(Vec::new(), 0)));
                order.len() - 1
            }
        };
        let Some((_, current)) = order.get_mut(slot) else {
            continue;
        };
        match index {
            None => *current = QueryValue::Scalar(value),
            Some(index) => {
                if matches!(current, QueryValue::Scalar(_)) {
                    *current = QueryValue::Array(Vec::new(), 0);
                }
                if let QueryValue::Array(elements, next) = current {
                    set_array_element(elements, next, index, value);
                }
            }
        }
    }

    order
        .into_iter()
        .map(|(name, value)| match value {
            QueryValue::Scalar(v) => (name, v),
            QueryValue::Array(elements, _) => {
                let joined = elements
                    .into_iter()
                    .map(|(_, v)| v)
                    .collect::<Vec<_>>()
                    .join(",");
                (name, joined)
            }
        })
        .collect()
}

/// `array[index] = value` (or `array[] = value` when `index` is `None`) with PHP's rules for the
/// next integer key.
fn set_array_element(
    elements: &mut Vec<(String, String)>,
    next: &mut i64,
    index: Option<String>,
    value: String,
) {
    let key = match index {
        Some(index) => {
            if let Some(n) = php_int_key(&index)
                && n >= *next
            {
                *next = n.saturating_add(1);
            }
            index
        }
        None => {
            let key = next.to_string();
            *next = next.saturating_add(1);
            key
        }
    };
    match elements.iter_mut().find(|(k, _)| *k == key) {
        Some(element) => element.1 = value,
        None => elements.push((key, value)),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP API signatures
// ---------------------------------------------------------------------------------------------

/// Why a signed HTTP API request was refused. Every variant is answered with 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAuthError {
    /// auth_key missing or not the app's key -> 401 "Unknown auth_key."
    UnknownAuthKey,
    /// auth_timestamp missing or not an integer -> 401 "Missing or invalid auth_timestamp."
    BadTimestamp,
    /// |now - auth_timestamp| > 600 -> 401 `"Timestamp expired: Given timestamp (<ts>) not
    /// within 600s of server time (<now>), <n>s off."`
    TimestampExpired { given: i64, now: i64 },
    /// signature missing or wrong -> 401 "Authentication signature invalid."
    BadSignature,
    /// a body was sent without a `body_md5` parameter -> 401 "Missing body_md5: ..."
    MissingBodyMd5,
    /// the `body_md5` parameter is not the MD5 of the body -> 401 "body_md5 does not match ..."
    BodyMd5Mismatch,
}

impl ApiAuthError {
    /// The response body text.
    pub fn message(&self) -> String {
        match self {
            ApiAuthError::UnknownAuthKey => "Unknown auth_key.".to_owned(),
            ApiAuthError::BadTimestamp => "Missing or invalid auth_timestamp.".to_owned(),
            ApiAuthError::TimestampExpired { given, now } => {
                let off = (i128::from(*now) - i128::from(*given)).unsigned_abs();
                format!(
                    "Timestamp expired: Given timestamp ({given}) not within \
                     {TIMESTAMP_WINDOW_SECS}s of server time ({now}), {off}s off."
                )
            }
            ApiAuthError::BadSignature => "Authentication signature invalid.".to_owned(),
            ApiAuthError::MissingBodyMd5 => {
                "Missing body_md5: a request with a body must sign the MD5 of its body.".to_owned()
            }
            ApiAuthError::BodyMd5Mismatch => {
                "body_md5 does not match the MD5 of the request body.".to_owned()
            }
        }
    }
}

impl fmt::Display for ApiAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ApiAuthError {}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The signed string for already-parsed query params: "METHOD\npath\nk=v&k=v" with every
/// param but `auth_signature`, keys sorted bytewise as sent (what Pusher's Node, Python and PHP
/// SDKs sign) and values decoded. `body_md5` is signed as the client sent it; whether it matches
/// the body is [`check_body_md5`]'s business.
fn api_string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut signed: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "auth_signature")
        .collect();
    signed.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let query = signed
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!("{}\n{path}\n{query}", method.to_ascii_uppercase())
}

/// Lower-case hex MD5 of a request body, as Pusher's `body_md5`.
fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// A `body_md5` the client sent must be the MD5 of the body (the Python SDK sends the MD5 of the
/// empty body on every GET); a non-empty body must come with one, or it would not be signed.
fn check_body_md5(params: &[(String, String)], body: &[u8]) -> Result<(), ApiAuthError> {
    match param(params, "body_md5") {
        None if body.is_empty() => Ok(()),
        None => Err(ApiAuthError::MissingBodyMd5),
        Some(given) if given.eq_ignore_ascii_case(&body_md5(body)) => Ok(()),
        Some(_) => Err(ApiAuthError::BodyMd5Mismatch),
    }
}

/// Verify a Pusher HTTP API request signature (reverb-behaviour.md 4.2 with revurb's port
/// decisions and Pusher's signing spec): `path` is the request path as the client signed it,
/// with the server's --path prefix already stripped (e.g. "/apps/123/events").
///
/// Steps: parse_query(raw_query) (PHP rules, values decoded); `auth_signature` present (else
/// BadSignature); `auth_key` == app_key (missing: BadSignature, other: UnknownAuthKey);
/// `auth_timestamp` an i64 (else BadTimestamp) within the window of now_unix (else
/// TimestampExpired); HMAC-SHA256 hex, with the secret, of "METHOD\npath\nquery" where query
/// is every param but `auth_signature`, sorted by key bytes, joined "k=v" with '&' (METHOD
/// upper-cased, as Symfony's getMethod does), compared constant-time (else BadSignature);
/// finally the signed `body_md5` must be the body's MD5 when present (else BodyMd5Mismatch)
/// and present when the body is not empty (else MissingBodyMd5).
pub fn verify_api_request(
    method: &str,
    path: &str,
    raw_query: &str,
    body: &[u8],
    app_key: &str,
    secret: &str,
    now_unix: i64,
) -> Result<(), ApiAuthError> {
    let params = parse_query(raw_query);

    // An unsigned request (no key, no signature) is "signature invalid", as in Reverb.
    let signature = param(&params, "auth_signature").ok_or(ApiAuthError::BadSignature)?;
    match param(&params, "auth_key") {
        None => return Err(ApiAuthError::BadSignature),
        Some(k) if k != app_key => return Err(ApiAuthError::UnknownAuthKey),
        Some(_) => {}
    }

    let given = param(&params, "auth_timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or(ApiAuthError::BadTimestamp)?;
    let off = (i128::from(now_unix) - i128::from(given)).unsigned_abs();
    if off > TIMESTAMP_WINDOW_SECS.unsigned_abs().into() {
        return Err(ApiAuthError::TimestampExpired {
            given,
            now: now_unix,
        });
    }

    let to_sign = api_string_to_sign(method, path, &params);
    if !signature_matches(secret.as_bytes(), to_sign.as_bytes(), signature) {
        return Err(ApiAuthError::BadSignature);
    }
    check_body_md5(&params, body)
}

/// The client side of the same computation, used by tests and by our load generator:
/// returns the full query string
/// `"auth_key=..&auth_timestamp=..&auth_version=1.0[&body_md5=..][&extra..]&auth_signature=.."`
/// (the `extra` params, percent-encoded, are included in the signature) for a request.
///
/// The signature is computed from the query string exactly as [`verify_api_request`] will parse
/// it, so extra keys that PHP rules rewrite (e.g. `a.b`) still verify.
pub fn sign_api_request(
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    app_key: &str,
    secret: &str,
    now_unix: i64,
) -> String {
    let mut query = format!(
        "auth_key={}&auth_timestamp={now_unix}&auth_version=1.0",
        url_encode(app_key)
    );
    if !body.is_empty() {
        query.push_str("&body_md5=");
        query.push_str(&body_md5(body));
    }
    for (k, v) in extra {
        query.push('&');
        query.push_str(&url_encode(k));
        query.push('=');
        query.push_str(&url_encode(v));
    }
    let to_sign = api_string_to_sign(method, path, &parse_query(&query));
    query.push_str("&auth_signature=");
    query.push_str(&hmac_sha256_hex(secret.as_bytes(), to_sign.as_bytes()));
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "key";
    const SECRET: &str = "secret";
    const NOW: i64 = 1_700_000_000;

    // Known answers computed with Python's hmac/hashlib.
    const PRIVATE_SIG: &str = "70492d107085f5eed6c826e9deabe88bd9466b7349d812f7579b263318287644";
    const PRESENCE_DATA: &str = r#"{"user_id":"1","user_info":{"name":"Ann"}}"#;
    const PRESENCE_SIG: &str = "57146150f2191cd26dca4068ff06d7bc4b3cb1dbbd506a5c4c69f305d744250b";
    const USER_DATA: &str = r#"{"id":"42","name":"Bob"}"#;
    const USER_SIG: &str = "486f491fb4ed209e94e643f15f40ffda969c7e1a0dc3d1eb081bdad8366a6661";
    const BODY: &[u8] = br#"{"name":"ev","data":"{}","channel":"test"}"#;
    const BODY_MD5: &str = "9aa96f7dcd0ce18c7a27cb5e1b6e1eae";
    const API_SIG: &str = "484c0e7909ff49601c98a9f67ee2ec6d295d487dff05cbf4514210e35bde3a5b";
    const GET_SIG: &str = "562117ef67ca18011e6af214d8a174e485c0140fef3647012060e4081343aa88";
    /// MD5 of the empty body, which the Python SDK signs on every GET.
    const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, val)| ((*k).to_owned(), (*val).to_owned()))
            .collect()
    }

    // --- HMAC ---------------------------------------------------------------------------

    #[test]
    fn hmac_known_answers() {
        assert_eq!(
            hmac_sha256_hex(b"secret", b"123.456:private-foo"),
            PRIVATE_SIG
        );
        let user = format!("123.456::user::{USER_DATA}");
        assert_eq!(hmac_sha256_hex(b"secret", user.as_bytes()), USER_SIG);
        assert_eq!(
            hmac_sha256_hex(b"", b""),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"
        );
    }

    #[test]
    fn hmac_output_is_lowercase_hex() {
        let h = hmac_sha256_hex(b"k", b"m");
        assert_eq!(h.len(), 64);
        assert!(
            h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }

    #[test]
    fn constant_time_eq_cases() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    // --- channel auth -------------------------------------------------------------------

    #[test]
    fn channel_auth_valid_private() {
        let auth = format!("{KEY}:{PRIVATE_SIG}");
        assert!(verify_channel_auth(
            KEY,
            SECRET,
            "123.456",
            "private-foo",
            None,
            Some(&auth)
        ));
        // Empty channel_data is treated as absent.
        assert!(verify_channel_auth(
            KEY,
            SECRET,
            "123.456",
            "private-foo",
            Some(""),
            Some(&auth)
        ));
    }

    #[test]
    fn channel_auth_valid_presence_with_data() {
        let auth = format!("{KEY}:{PRESENCE_SIG}");
        assert!(verify_channel_auth(
            KEY,
            SECRET,
            "123.456",
            "presence-room",
            Some(PRESENCE_DATA),
            Some(&auth)
        ));
        // Without the data the signature no longer matches.
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            "123.456",
            "presence-room",
            None,
            Some(&auth)
        ));
    }

    #[test]
    fn channel_auth_tampered_channel_data() {
        let auth = format!("{KEY}:{PRESENCE_SIG}");
        let tampered = PRESENCE_DATA.replace("\"1\"", "\"2\"");
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            "123.456",
            "presence-room",
            Some(&tampered),
            Some(&auth)
        ));
        // Re-encoding (even semantically equal JSON) breaks it: the raw string is signed.
        let spaced = PRESENCE_DATA.replace(':', ": ");
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            "123.456",
            "presence-room",
            Some(&spaced),
            Some(&auth)
        ));
    }

    #[test]
    fn channel_auth_wrong_key_prefix() {
        let auth = format!("other:{PRIVATE_SIG}");
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            "123.456",
            "private-foo",
            None,
            Some(&auth)
        ));
        let empty_key = format!(":{PRIVATE_SIG}");
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            "123.456",
            "private-foo",
            None,
            Some(&empty_key)
        ));
    }

    #[test]
    fn channel_auth_splits_at_first_colon() {
        // A key that itself contains ':' cannot be matched, the split is at the first ':'.
        let auth = format!("a:b:{PRIVATE_SIG}");
        assert!(!verify_channel_auth(
            "a:b",
            SECRET,
            "123.456",
            "private-foo",
            None,
            Some(&auth)
        ));
    }

    #[test]
    fn channel_auth_no_colon_none_empty() {
        for auth in [Some(PRIVATE_SIG), None, Some(""), Some(":"), Some("key:")] {
            assert!(
                !verify_channel_auth(KEY, SECRET, "123.456", "private-foo", None, auth),
                "{auth:?} must be refused"
            );
        }
    }

    #[test]
    fn channel_auth_socket_id_mismatch() {
        let auth = format!("{KEY}:{PRIVATE_SIG}");
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            "123.457",
            "private-foo",
            None,
            Some(&auth)
        ));
        assert!(!verify_channel_auth(
            KEY,
            "other-secret",
            "123.456",
            "private-foo",
            None,
            Some(&auth)
        ));
        let upper = format!("{KEY}:{}", PRIVATE_SIG.to_ascii_uppercase());
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            "123.456",
            "private-foo",
            None,
            Some(&upper)
        ));
    }

    // --- user auth ----------------------------------------------------------------------

    #[test]
    fn user_auth_valid_and_invalid() {
        let auth = format!("{KEY}:{USER_SIG}");
        assert!(verify_user_auth(KEY, SECRET, "123.456", USER_DATA, &auth));
        assert!(!verify_user_auth(KEY, SECRET, "123.457", USER_DATA, &auth));
        assert!(!verify_user_auth(
            KEY,
            SECRET,
            "123.456",
            r#"{"id":"43","name":"Bob"}"#,
            &auth
        ));
        assert!(!verify_user_auth(
            "other", SECRET, "123.456", USER_DATA, &auth
        ));
        assert!(!verify_user_auth(
            KEY, SECRET, "123.456", USER_DATA, USER_SIG
        ));
        assert!(!verify_user_auth(KEY, SECRET, "123.456", USER_DATA, ""));
        // The channel-auth string for the same socket does not pass as user auth.
        let channel_style = format!("{KEY}:{PRIVATE_SIG}");
        assert!(!verify_user_auth(
            KEY,
            SECRET,
            "123.456",
            USER_DATA,
            &channel_style
        ));
    }

    // --- url_decode / parse_query -------------------------------------------------------

    #[test]
    fn url_decode_rules() {
        assert_eq!(url_decode("a%20b+c"), "a b c");
        assert_eq!(url_decode("%41%4a%4A"), "AJJ");
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz%4"), "%zz%4");
        assert_eq!(url_decode("%%41"), "%A");
        assert_eq!(url_decode("%C3%A9t%C3%A9"), "été");
        assert_eq!(url_decode("%FF"), "\u{FFFD}");
        assert_eq!(url_decode("é+%2B"), "é +");
        assert_eq!(url_decode(""), "");
    }

    #[test]
    fn parse_query_decoding() {
        assert_eq!(
            parse_query("a=1&b=x%20y&c=p+q&d=%2B"),
            pairs(&[("a", "1"), ("b", "x y"), ("c", "p q"), ("d", "+")])
        );
        assert_eq!(
            parse_query("a=%zz&b=50%&c=%4"),
            pairs(&[("a", "%zz"), ("b", "50%"), ("c", "%4")])
        );
        // Only the first '=' splits.
        assert_eq!(parse_query("a=b=c"), pairs(&[("a", "b=c")]));
        // Encoded separators stay inside the value.
        assert_eq!(parse_query("a=x%26y%3Dz"), pairs(&[("a", "x&y=z")]));
    }

    #[test]
    fn parse_query_empty_pieces_and_missing_values() {
        assert_eq!(parse_query(""), pairs(&[]));
        assert_eq!(parse_query("&&"), pairs(&[]));
        assert_eq!(
            parse_query("&a=1&&b&c=&"),
            pairs(&[("a", "1"), ("b", ""), ("c", "")])
        );
        // Empty key names are dropped, as PHP does.
        assert_eq!(parse_query("=x&%20=y&[]=z&a=1"), pairs(&[("a", "1")]));
    }

    #[test]
    fn parse_query_key_normalisation() {
        assert_eq!(
            parse_query("a.b=1&c+d=2&e%2Ef=3&%20g=4"),
            pairs(&[("a_b", "1"), ("c_d", "2"), ("e_f", "3"), ("g", "4")])
        );
        // Values are not normalised.
        assert_eq!(parse_query("k=a.b c"), pairs(&[("k", "a.b c")]));
        // Unclosed '[' becomes '_'.
        assert_eq!(parse_query("a[b=1"), pairs(&[("a_b", "1")]));
        // Normalised keys collide: last wins, position of the first.
        assert_eq!(
            parse_query("a.b=1&x=0&a_b=2"),
            pairs(&[("a_b", "2"), ("x", "0")])
        );
    }

    #[test]
    fn parse_query_arrays() {
        assert_eq!(
            parse_query("a[]=x&b=1&a[]=y&a%5B%5D=z"),
            pairs(&[("a", "x,y,z"), ("b", "1")])
        );
        assert_eq!(parse_query("a[x]=1&a[y]=2&a[x]=3"), pairs(&[("a", "3,2")]));
        assert_eq!(parse_query("a[0]=1&a[]=2&a[1]=3"), pairs(&[("a", "1,3")]));
        assert_eq!(parse_query("a.b[]=1&a.b[]=2"), pairs(&[("a_b", "1,2")]));
        // A scalar then an array: the array replaces it; an array then a scalar: scalar wins.
        assert_eq!(parse_query("a=1&a[]=2"), pairs(&[("a", "2")]));
        assert_eq!(parse_query("a[]=1&a=2"), pairs(&[("a", "2")]));
        assert_eq!(parse_query("a[]"), pairs(&[("a", "")]));
    }

    #[test]
    fn parse_query_repeats_last_wins() {
        assert_eq!(parse_query("a=1&b=2&a=3"), pairs(&[("a", "3"), ("b", "2")]));
    }

    #[test]
    fn parse_query_caps_at_1000_pairs() {
        let raw: String = (0..1500)
            .map(|i| format!("k{i}=v{i}"))
            .collect::<Vec<_>>()
            .join("&");
        let parsed = parse_query(&raw);
        assert_eq!(parsed.len(), 1000);
        assert_eq!(parsed.first(), Some(&("k0".to_owned(), "v0".to_owned())));
        assert_eq!(parsed.last(), Some(&("k999".to_owned(), "v999".to_owned())));
        // Empty pieces do not count towards the cap.
        let with_empties = format!("{}&{raw}", "&".repeat(5000));
        assert_eq!(parse_query(&with_empties).len(), 1000);
        // Parameters after the cap are ignored, including a signature.
        let late = format!("{raw}&auth_signature=x");
        assert!(param(&parse_query(&late), "auth_signature").is_none());
    }

    // --- API signatures -----------------------------------------------------------------

    #[test]
    fn api_string_to_sign_known_answer() {
        let params = parse_query(&format!(
            "auth_version=1.0&body_md5={BODY_MD5}&auth_key=key&auth_timestamp=1700000000\
             &auth_signature=x"
        ));
        let s = api_string_to_sign("POST", "/apps/123/events", &params);
        assert_eq!(
            s,
            format!(
                "POST\n/apps/123/events\nauth_key=key&auth_timestamp=1700000000\
                 &auth_version=1.0&body_md5={BODY_MD5}"
            )
        );
        assert_eq!(hmac_sha256_hex(b"secret", s.as_bytes()), API_SIG);
    }

    #[test]
    fn api_verify_known_answer_post() {
        let q = format!(
            "auth_key=key&auth_timestamp=1700000000&auth_version=1.0\
             &body_md5={BODY_MD5}&auth_signature={API_SIG}"
        );
        assert_eq!(
            verify_api_request("POST", "/apps/123/events", &q, BODY, KEY, SECRET, NOW),
            Ok(())
        );
        // Method is case-normalised like Symfony's getMethod().
        assert_eq!(
            verify_api_request("post", "/apps/123/events", &q, BODY, KEY, SECRET, NOW),
            Ok(())
        );
        // Another path or body fails.
        assert_eq!(
            verify_api_request("POST", "/apps/124/events", &q, BODY, KEY, SECRET, NOW),
            Err(ApiAuthError::BadSignature)
        );
        assert_eq!(
            verify_api_request("POST", "/apps/123/events", &q, b"{}", KEY, SECRET, NOW),
            Err(ApiAuthError::BodyMd5Mismatch)
        );
    }

    #[test]
    fn api_verify_known_answer_get_with_decoded_values() {
        // Unsorted, percent-encoded, '+' for space, an array param, and params that Reverb
        // leaves out of the signed string (appId, channelName): every param but the signature
        // is signed.
        let q = format!(
            "info[]=user_count&filter_by_prefix=presence+f%6Fo&auth_version=1.0\
             &appId=9&channelName=x&auth_timestamp=1700000000&info[]=subscription_count\
             &auth_key=key&auth_signature={GET_SIG}"
        );
        assert_eq!(
            verify_api_request("GET", "/apps/123/channels", &q, b"", KEY, SECRET, NOW),
            Ok(())
        );
    }

    #[test]
    fn api_round_trip_without_body() {
        let q = sign_api_request("GET", "/apps/123/channels", &[], b"", KEY, SECRET, NOW);
        assert!(q.starts_with(
            "auth_key=key&auth_timestamp=1700000000&auth_version=1.0&auth_signature="
        ));
        assert!(!q.contains("body_md5"));
        assert_eq!(
            verify_api_request("GET", "/apps/123/channels", &q, b"", KEY, SECRET, NOW),
            Ok(())
        );
    }

    #[test]
    fn api_round_trip_with_body() {
        let q = sign_api_request("POST", "/apps/123/events", &[], BODY, KEY, SECRET, NOW);
        assert!(q.contains(&format!("&body_md5={BODY_MD5}&")));
        assert!(q.ends_with(&format!("&auth_signature={API_SIG}")));
        assert_eq!(
            verify_api_request("POST", "/apps/123/events", &q, BODY, KEY, SECRET, NOW),
            Ok(())
        );
        // The body is bound to the signature through body_md5.
        assert_eq!(
            verify_api_request("POST", "/apps/123/events", &q, b"{}", KEY, SECRET, NOW),
            Err(ApiAuthError::BodyMd5Mismatch)
        );
        assert_eq!(
            verify_api_request("POST", "/apps/123/events", &q, b"", KEY, SECRET, NOW),
            Err(ApiAuthError::BodyMd5Mismatch)
        );
    }

    #[test]
    fn api_round_trip_extra_params_any_order() {
        let extra = [("info", "user_count"), ("filter_by_prefix", "presence-")];
        let q = sign_api_request("GET", "/apps/1/channels", &extra, b"", KEY, SECRET, NOW);
        assert_eq!(
            verify_api_request("GET", "/apps/1/channels", &q, b"", KEY, SECRET, NOW),
            Ok(())
        );
        // Reverse the order of the pieces: sorting makes it irrelevant.
        let reversed: Vec<&str> = q.split('&').rev().collect();
        let reversed = reversed.join("&");
        assert_eq!(
            verify_api_request("GET", "/apps/1/channels", &reversed, b"", KEY, SECRET, NOW),
            Ok(())
        );
        // Changing an extra value breaks it.
        let changed = q.replace("info=user_count", "info=subscription_count");
        assert_eq!(
            verify_api_request("GET", "/apps/1/channels", &changed, b"", KEY, SECRET, NOW),
            Err(ApiAuthError::BadSignature)
        );
        // Dropping an extra param breaks it.
        let dropped = q.replace("info=user_count&", "");
        assert_eq!(
            verify_api_request("GET", "/apps/1/channels", &dropped, b"", KEY, SECRET, NOW),
            Err(ApiAuthError::BadSignature)
        );
    }

    #[test]
    fn api_round_trip_awkward_extras() {
        let extra = [("a.b", "x y&z=1/é"), ("info", "")];
        let q = sign_api_request("GET", "/apps/1/channels", &extra, b"", KEY, SECRET, NOW);
        assert!(q.contains("a.b=x%20y%26z%3D1%2F%C3%A9"));
        assert_eq!(
            verify_api_request("GET", "/apps/1/channels", &q, b"", KEY, SECRET, NOW),
            Ok(())
        );
    }

    #[test]
    fn api_percent_encoded_value_signs_decoded_value() {
        let q = sign_api_request(
            "GET",
            "/apps/1/channels",
            &[("filter_by_prefix", "presence-a b")],
            b"",
            KEY,
            SECRET,
            NOW,
        );
        assert!(q.contains("filter_by_prefix=presence-a%20b"));
        let expected_sig = hmac_sha256_hex(
            SECRET.as_bytes(),
            b"GET\n/apps/1/channels\nauth_key=key&auth_timestamp=1700000000\
              &auth_version=1.0&filter_by_prefix=presence-a b",
        );
        assert!(q.ends_with(&expected_sig));
        // Any encoding of the same decoded value verifies.
        for encoded in ["presence-a+b", "presence%2Da%20b", "%70resence-a+b"] {
            let alt = q.replace("presence-a%20b", encoded);
            assert_eq!(
                verify_api_request("GET", "/apps/1/channels", &alt, b"", KEY, SECRET, NOW),
                Ok(()),
                "{encoded}"
            );
        }
    }

    #[test]
    fn api_client_body_md5_is_signed_and_must_match_the_body() {
        let q = sign_api_request("POST", "/apps/1/events", &[], BODY, KEY, SECRET, NOW);
        // Changing the sent body_md5 breaks the signature: it is signed as sent.
        let wrong = q.replace(BODY_MD5, "00000000000000000000000000000000");
        assert_eq!(
            verify_api_request("POST", "/apps/1/events", &wrong, BODY, KEY, SECRET, NOW),
            Err(ApiAuthError::BadSignature)
        );
        // A correctly signed body_md5 of another body is refused as such.
        let other = [("body_md5", "00000000000000000000000000000000")];
        let signed_wrong =
            sign_api_request("POST", "/apps/1/events", &other, b"", KEY, SECRET, NOW);
        assert_eq!(
            verify_api_request(
                "POST",
                "/apps/1/events",
                &signed_wrong,
                BODY,
                KEY,
                SECRET,
                NOW
            ),
            Err(ApiAuthError::BodyMd5Mismatch)
        );
        // A body needs a body_md5, or nothing would bind it to the signature.
        let unbound = sign_api_request("POST", "/apps/1/events", &[], b"", KEY, SECRET, NOW);
        assert_eq!(
            verify_api_request("POST", "/apps/1/events", &unbound, BODY, KEY, SECRET, NOW),
            Err(ApiAuthError::MissingBodyMd5)
        );
        // The MD5 of the empty body on a GET (the Python SDK) is checked and signed; its hex
        // digits may be upper case.
        for md5 in [EMPTY_MD5.to_owned(), EMPTY_MD5.to_ascii_uppercase()] {
            let extra = [("body_md5", md5.as_str())];
            let g = sign_api_request("GET", "/apps/1/channels", &extra, b"", KEY, SECRET, NOW);
            assert_eq!(
                verify_api_request("GET", "/apps/1/channels", &g, b"", KEY, SECRET, NOW),
                Ok(()),
                "{md5}"
            );
        }
        let g = sign_api_request("GET", "/apps/1/channels", &other, b"", KEY, SECRET, NOW);
        assert_eq!(
            verify_api_request("GET", "/apps/1/channels", &g, b"", KEY, SECRET, NOW),
            Err(ApiAuthError::BodyMd5Mismatch)
        );
    }

    #[test]
    fn api_params_the_client_did_not_sign_are_refused() {
        let q = sign_api_request("GET", "/apps/1/channels", &[], b"", KEY, SECRET, NOW);
        for extra in [
            "appId=1",
            "appKey=key",
            "channelName=x",
            "body_md5=",
            "info=user_count",
        ] {
            let added = format!("{q}&{extra}");
            assert_eq!(
                verify_api_request("GET", "/apps/1/channels", &added, b"", KEY, SECRET, NOW),
                Err(ApiAuthError::BadSignature),
                "{extra}"
            );
        }
    }

    /// Requests made by the official Python SDK (`pusher` 3.3.4, timestamp fixed at NOW): every
    /// one carries `body_md5`, GETs that of the empty body, and `terminate_user_connections`
    /// signs a path without `/apps/{id}`.
    #[test]
    fn api_verify_python_sdk_requests() {
        let md5 = format!("auth_timestamp=1700000000&auth_version=1.0&body_md5={EMPTY_MD5}");
        let cases: [(&str, &str, String, &[u8]); 5] = [
            (
                "GET",
                "/apps/123/channels",
                format!(
                    "auth_key=key&auth_signature=545649f2e38603d6296337b4247b7cb48614999fe59b521c\
                     aaa4e06a2e3cca13&{md5}&filter_by_prefix=presence-&info=user_count"
                ),
                b"",
            ),
            (
                "GET",
                "/apps/123/channels/presence-room",
                format!(
                    "auth_key=key&auth_signature=2c59df3d6c77a6c4abd230e598a5721a5e31e7be42dd0141\
                     28b1248c155bd655&{md5}&info=user_count,subscription_count"
                ),
                b"",
            ),
            (
                "GET",
                "/apps/123/channels/presence-room/users",
                format!(
                    "auth_key=key&auth_signature=4a0a1242cd8d418352ce64b322c6ba25068cf7d8dd69f630\
                     870f34340369f52a&{md5}"
                ),
                b"",
            ),
            (
                "POST",
                "/users/42/terminate_connections",
                "auth_key=key&auth_signature=b4607bf65b8a341f32fe85ebc84aec3c7264d096b81c93ad4c4\
                 98dc09f67aef2&auth_timestamp=1700000000&auth_version=1.0\
                 &body_md5=99914b932bd37a50b983c5e7c90ae93b"
                    .to_owned(),
                b"{}",
            ),
            (
                "POST",
                "/apps/123/events",
                "auth_key=key&auth_signature=ef1061a622d289cf99e1c6d4fb84eeaf65801cdfbc36882c947\
                 956e723d81c35&auth_timestamp=1700000000&auth_version=1.0\
                 &body_md5=ec3d804296ee65dae3e5dc9d044b1f7b"
                    .to_owned(),
                br#"{"name": "ev", "channels": ["test"], "data": "{\"a\": 1}"}"#,
            ),
        ];
        for (method, path, query, body) in cases {
            assert_eq!(
                verify_api_request(method, path, &query, body, KEY, SECRET, NOW),
                Ok(()),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn api_unknown_auth_key() {
        let q = sign_api_request("GET", "/apps/1/channels", &[], b"", "other", SECRET, NOW);
        assert_eq!(
            verify_api_request("GET", "/apps/1/channels", &q, b"", KEY, SECRET, NOW),
            Err(ApiAuthError::UnknownAuthKey)
        );
        // Without a key (or unsigned altogether) it is "signature invalid", as in Reverb.
        let missing = q.replace("auth_key=other&", "");
        assert_eq!(
            verify_api_request("GET", "/apps/1/channels", &missing, b"", KEY, SECRET, NOW),
            Err(ApiAuthError::BadSignature)
        );
        assert_eq!(
            verify_api_request("GET", "/apps/1/channels", "", b"", KEY, SECRET, NOW),
            Err(ApiAuthError::BadSignature)
        );
    }

    #[test]
    fn api_bad_timestamp() {
        for ts in ["", "abc", "1.5", "1e9", "%20170"] {
            let q = format!("auth_key=key&auth_timestamp={ts}&auth_signature=x");
            assert_eq!(
                verify_api_request("GET", "/p", &q, b"", KEY, SECRET, NOW),
                Err(ApiAuthError::BadTimestamp),
                "{ts:?}"
            );
        }
        assert_eq!(
            verify_api_request(
                "GET",
                "/p",
                "auth_key=key&auth_signature=x",
                b"",
                KEY,
                SECRET,
                NOW
            ),
            Err(ApiAuthError::BadTimestamp)
        );
    }

    #[test]
    fn api_timestamp_window_edges() {
        for (ts, ok) in [
            (NOW - 600, true),
            (NOW + 600, true),
            (NOW - 601, false),
            (NOW + 601, false),
            (NOW, true),
        ] {
            let q = sign_api_request("GET", "/apps/1/channels", &[], b"", KEY, SECRET, ts);
            let got = verify_api_request("GET", "/apps/1/channels", &q, b"", KEY, SECRET, NOW);
            if ok {
                assert_eq!(got, Ok(()), "ts offset {}", ts - NOW);
            } else {
                assert_eq!(
                    got,
                    Err(ApiAuthError::TimestampExpired {
                        given: ts,
                        now: NOW
                    }),
                    "ts offset {}",
                    ts - NOW
                );
            }
        }
    }

    #[test]
    fn api_timestamp_extremes_do_not_overflow() {
        for ts in [i64::MIN, i64::MAX] {
            let q = format!("auth_key=key&auth_timestamp={ts}&auth_signature=x");
            assert_eq!(
                verify_api_request("GET", "/p", &q, b"", KEY, SECRET, i64::MAX - ts.max(0)),
                Err(ApiAuthError::TimestampExpired {
                    given: ts,
                    now: i64::MAX - ts.max(0)
                })
            );
        }
        let e = ApiAuthError::TimestampExpired {
            given: i64::MIN,
            now: i64::MAX,
        };
        assert!(e.message().ends_with("18446744073709551615s off."));
    }

    #[test]
    fn api_bad_signature() {
        let q = sign_api_request("GET", "/apps/1/channels", &[], b"", KEY, SECRET, NOW);
        assert_eq!(
            verify_api_request("GET", "/apps/1/channels", &q, b"", KEY, "wrong", NOW),
            Err(ApiAuthError::BadSignature)
        );
        let (unsigned, _) = q.split_once("&auth_signature=").unwrap_or((&q, ""));
        assert_eq!(
            verify_api_request("GET", "/apps/1/channels", unsigned, b"", KEY, SECRET, NOW),
            Err(ApiAuthError::BadSignature)
        );
        let empty = format!("{unsigned}&auth_signature=");
        assert_eq!(
            verify_api_request("GET", "/apps/1/channels", &empty, b"", KEY, SECRET, NOW),
            Err(ApiAuthError::BadSignature)
        );
        let upper = format!(
            "{unsigned}&auth_signature={}",
            q.rsplit('=').next().unwrap_or("").to_ascii_uppercase()
        );
        assert_eq!(
            verify_api_request("GET", "/apps/1/channels", &upper, b"", KEY, SECRET, NOW),
            Err(ApiAuthError::BadSignature)
        );
        assert_eq!(
            verify_api_request("POST", "/apps/1/channels", &q, b"", KEY, SECRET, NOW),
            Err(ApiAuthError::BadSignature)
        );
    }

    #[test]
    fn api_error_messages() {
        assert_eq!(ApiAuthError::UnknownAuthKey.message(), "Unknown auth_key.");
        assert_eq!(
            ApiAuthError::BadTimestamp.message(),
            "Missing or invalid auth_timestamp."
        );
        assert_eq!(
            ApiAuthError::BadSignature.message(),
            "Authentication signature invalid."
        );
        let e = ApiAuthError::TimestampExpired {
            given: 1000,
            now: 1700,
        };
        assert_eq!(
            e.message(),
            "Timestamp expired: Given timestamp (1000) not within 600s of server time (1700), 700s off."
        );
        assert_eq!(e.to_string(), e.message());
        let future = ApiAuthError::TimestampExpired {
            given: 2400,
            now: 1700,
        };
        assert!(future.message().ends_with(", 700s off."));
        assert_eq!(
            ApiAuthError::BadSignature.to_string(),
            "Authentication signature invalid."
        );
        assert_eq!(
            ApiAuthError::MissingBodyMd5.message(),
            "Missing body_md5: a request with a body must sign the MD5 of its body."
        );
        assert_eq!(
            ApiAuthError::BodyMd5Mismatch.message(),
            "body_md5 does not match the MD5 of the request body."
        );
    }
}
