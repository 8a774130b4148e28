//! RESP2 (REdis Serialization Protocol, version 2) parsing and command encoding.
//!
//! What this module does:
//!
//! - [`parse`] is an incremental, sans-IO parser: it looks at the bytes a socket
//!   reader has accumulated so far and returns either one complete [`Value`]
//!   together with the number of bytes it used, `Ok(None)` when the value is
//!   not complete yet (the normal case for partial reads), or a [`ParseError`]
//!   for malformed input. The caller drains the used bytes and calls again.
//!   Each call re-scans its input from the start; a single call is linear in
//!   the bytes it examines and never recurses (nesting is tracked on an
//!   explicit stack bounded by [`Limits::max_depth`]).
//! - [`encode_command`] writes a command as an array of bulk strings into a
//!   `Vec` allocated with exactly [`encoded_len`] bytes of capacity.
//!
//! What it does not do:
//!
//! - No I/O, buffering, connection handling or pub/sub state: callers own the
//!   socket and the read buffer.
//! - No RESP3 types (maps, sets, doubles, big numbers, verbatim strings, push
//!   `>` frames, ...) and no inline commands; those bytes are [`ParseError::BadType`].
//! - No resumable partial state: an incomplete value is parsed again from its
//!   first byte on the next call.
//! - Simple strings and errors are decoded with `String::from_utf8_lossy`, so
//!   invalid UTF-8 in them is replaced rather than rejected.
//! - Integers and lengths accept an optional leading `-` but not `+`.

use std::fmt;

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK\r\n`
    Simple(String),
    /// `-ERR message\r\n`
    Error(String),
    /// `:42\r\n`
    Integer(i64),
    /// `$5\r\nhello\r\n`; `None` is the null bulk string `$-1\r\n`.
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`; `None` is the null array `*-1\r\n`.
    Array(Option<Vec<Value>>),
}

/// Why a buffer does not hold valid RESP2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The type byte is not one of `+ - : $ *`.
    BadType(u8),
    /// A bulk or array length is not a decimal integer, or is negative other than `-1`.
    BadLength,
    /// An integer reply is empty, not decimal, or does not fit in `i64`.
    BadInteger,
    /// A line or bulk payload is not terminated by `\r\n`.
    MissingCrLf,
    /// Arrays are nested deeper than [`Limits::max_depth`].
    TooDeep,
    /// A bulk, simple line or array exceeds [`Limits::max_bulk`] / [`Limits::max_array`].
    TooLarge,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::BadType(b) => write!(f, "RESP: unknown type byte 0x{b:02x}"),
            ParseError::BadLength => f.write_str("RESP: invalid bulk or array length"),
            ParseError::BadInteger => f.write_str("RESP: invalid integer"),
            ParseError::MissingCrLf => f.write_str("RESP: missing CRLF terminator"),
            ParseError::TooDeep => f.write_str("RESP: arrays nested too deeply"),
            ParseError::TooLarge => f.write_str("RESP: value exceeds size limit"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Resource limits applied while parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of nested (non-null) arrays; a top-level array is depth 1.
    pub max_depth: usize,
    /// Maximum bulk string payload length, also the maximum simple/error line length.
    pub max_bulk: usize,
    /// Maximum number of elements in one array.
    pub max_array: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 8,
            max_bulk: 64 * 1024 * 1024,
            max_array: 1_000_000,
        }
    }
}

/// Longest accepted integer/length text: `-9223372036854775808` is 20 bytes.
const MAX_NUMBER_LEN: usize = 20;

/// Smallest possible encoded value (`+\r\n`), used to bound pre-allocation.
const MIN_VALUE_LEN: usize = 3;

/// Outcome of looking for a `\r\n`-terminated line.
enum Line<'a> {
    /// The line content (without CRLF) and the index just past the CRLF.
    Complete(&'a [u8], usize),
    /// No terminator yet; holds the bytes seen so far.
    Incomplete(&'a [u8]),
}

/// Result of reading one value header.
enum Item {
    Value(Value),
    ArrayStart(usize),
}

/// Finds the line starting at `pos`. A lone `\n`, or `\r` followed by anything
/// other than `\n`, is [`ParseError::MissingCrLf`].
fn read_line(buf: &[u8], pos: usize) -> Result<Line<'_>, ParseError> {
    let rest = buf.get(pos..).unwrap_or_default();
    match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        None => Ok(Line::Incomplete(rest)),
        Some(i) => {
            let content = rest.get(..i).unwrap_or_default();
            match (rest.get(i), rest.get(i + 1)) {
                (Some(b'\r'), Some(b'\n')) => Ok(Line::Complete(content, pos + i + 2)),
                (Some(b'\r'), None) => Ok(Line::Incomplete(content)),
                _ => Err(ParseError::MissingCrLf),
            }
        }
    }
}

/// Parses an optionally `-`-signed decimal integer; `None` if malformed or out of range.
fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > MAX_NUMBER_LEN {
        return None;
    }
    let mut acc: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(d - b'0');
        // Accumulate negatively so that i64::MIN is representable.
        acc = acc.checked_mul(10)?.checked_sub(digit)?;
    }
    if negative {
        Some(acc)
    } else {
        acc.checked_neg()
    }
}

/// Whether `text` could still become a valid number once more bytes arrive.
fn plausible_number_prefix(text: &[u8]) -> bool {
    let digits = match text.split_first() {
        Some((b'-', rest)) => rest,
        _ => text,
    };
    digits.len() <= MAX_NUMBER_LEN && digits.iter().all(u8::is_ascii_digit)
}

/// Reads a numeric line at `pos`, mapping malformed text to `err`.
/// Malformed partial lines are rejected without waiting for the terminator.
fn read_number(
    buf: &[u8],
    pos: usize,
    err: ParseError,
) -> Result<Option<(i64, usize)>, ParseError> {
    match read_line(buf, pos)? {
        Line::Complete(text, next) => parse_i64(text).map(|n| Some((n, next))).ok_or(err),
        Line::Incomplete(text) if plausible_number_prefix(text) => Ok(None),
        Line::Incomplete(_) => Err(err),
    }
}

/// Reads a simple-string or error line at `pos`.
fn read_text(
    buf: &[u8],
    pos: usize,
    limits: &Limits,
) -> Result<Option<(String, usize)>, ParseError> {
    match read_line(buf, pos)? {
        Line::Complete(text, _) if text.len() > limits.max_bulk => Err(ParseError::TooLarge),
        Line::Complete(text, next) => Ok(Some((String::from_utf8_lossy(text).into_owned(), next))),
        Line::Incomplete(text) if text.len() > limits.max_bulk => Err(ParseError::TooLarge),
        Line::Incomplete(_) => Ok(None),
    }
}

/// Converts a parsed length into `None` (for `-1`) or a bounded `usize`.
fn check_length(n: i64, max: usize) -> Result<Option<usize>, ParseError> {
    if n == -1 {
        return Ok(None);
    }
    let len = usize::try_from(n).map_err(|_| ParseError::BadLength)?;
    if len > max {
        return Err(ParseError::TooLarge);
    }
    Ok(Some(len))
}

/// Reads one value header (and, for scalars, the whole value) at `pos`.
fn read_item(buf: &[u8], pos: usize, limits: &Limits) -> Result<Option<(Item, usize)>, ParseError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let body = pos + 1;
    match kind {
        b'+' => Ok(
            read_text(buf, body, limits)?.map(|(s, next)| (Item::Value(Value::Simple(s)), next))
        ),
        b'-' => {
            Ok(read_text(buf, body, limits)?.map(|(s, next)| (Item::Value(Value::Error(s)), next)))
        }
        b':' => Ok(read_number(buf, body, ParseError::BadInteger)?
            .map(|(n, next)| (Item::Value(Value::Integer(n)), next))),
        b'$' => {
            let Some((n, start)) = read_number(buf, body, ParseError::BadLength)? else {
                return Ok(None);
            };
            let Some(len) = check_length(n, limits.max_bulk)? else {
                return Ok(Some((Item::Value(Value::Bulk(None)), start)));
            };
            let end = start.checked_add(len).ok_or(ParseError::TooLarge)?;
            let Some(payload) = buf.get(start..end) else {
                return Ok(None);
            };
            match (buf.get(end), buf.get(end + 1)) {
                (Some(b'\r'), Some(b'\n')) => Ok(Some((
                    Item::Value(Value::Bulk(Some(payload.to_vec()))),
                    end + 2,
                ))),
                (None, _) | (Some(b'\r'), None) => Ok(None),
                _ => Err(ParseError::MissingCrLf),
            }
        }
        b'*' => {
            let Some((n, next)) = read_number(buf, body, ParseError::BadLength)? else {
                return Ok(None);
            };
            match check_length(n, limits.max_array)? {
                None => Ok(Some((Item::Value(Value::Array(None)), next))),
                Some(count) => Ok(Some((Item::ArrayStart(count), next))),
            }
        }
        other => Err(ParseError::BadType(other)),
    }
}

/// Parses one RESP2 value from the start of `buf`.
///
/// Returns `Ok(Some((value, used)))` for a complete value at the start of
/// `buf` (`used` bytes were consumed; bytes after it are left alone),
/// `Ok(None)` when more bytes are needed (incomplete input is normal), and
/// `Err` on malformed input or when a [`Limits`] bound is exceeded. Limits are
/// checked as soon as the offending header is seen, before its payload or
/// elements arrive.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, ParseError> {
    // Open arrays: collected elements and the declared element count.
    let mut stack: Vec<(Vec<Value>, usize)> = Vec::new();
    let mut pos = 0;
    loop {
        let Some((item, next)) = read_item(buf, pos, limits)? else {
            return Ok(None);
        };
        pos = next;
        let mut done = match item {
            Item::Value(v) => v,
            Item::ArrayStart(count) => {
                if stack.len() >= limits.max_depth {
                    return Err(ParseError::TooDeep);
                }
                if count == 0 {
                    Value::Array(Some(Vec::new()))
                } else {
                    // Never pre-allocate more elements than the remaining bytes could hold.
                    let room = buf.len().saturating_sub(pos) / MIN_VALUE_LEN;
                    stack.push((Vec::with_capacity(count.min(room)), count));
                    continue;
                }
            }
        };
        // Fold the finished value into its enclosing arrays, closing any that fill up.
        loop {
            let Some((items, count)) = stack.last_mut() else {
                return Ok(Some((done, pos)));
            };
            items.push(done);
            if items.len() < *count {
                break;
            }
            match stack.pop() {
                Some((items, _)) => done = Value::Array(Some(items)),
                None => return Err(ParseError::BadLength),
            }
        }
    }
}

/// Number of decimal digits in `n`.
fn decimal_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; MAX_NUMBER_LEN];
    let mut start = digits.len();
    for slot in digits.iter_mut().rev() {
        // `n % 10` is always < 10, so the narrowing is exact.
        *slot = b'0' + (n % 10) as u8;
        start -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// Appends a `<prefix><n>\r\n` header.
fn push_header(out: &mut Vec<u8>, prefix: u8, n: usize) {
    out.push(prefix);
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Exact number of bytes [`encode_command`] produces for `args`
/// (saturating at `usize::MAX`, which no real allocation reaches).
pub fn encoded_len(args: &[&[u8]]) -> usize {
    let header = 1 + decimal_len(args.len()) + 2;
    args.iter().fold(header, |total, arg| {
        let bulk = (1 + decimal_len(arg.len()) + 2)
            .saturating_add(arg.len())
            .saturating_add(2);
        total.saturating_add(bulk)
    })
}

/// Encodes a command as a RESP2 array of bulk strings, e.g.
/// `[b"PING"]` becomes `*1\r\n$4\r\nPING\r\n`. The returned `Vec` is allocated
/// once with exactly [`encoded_len`] capacity.
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(args));
    push_header(&mut out, b'*', args.len());
    for arg in args {
        push_header(&mut out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(b: &[u8]) -> Value {
        Value::Bulk(Some(b.to_vec()))
    }

    fn fixtures() -> Vec<(&'static [u8], Value)> {
        vec![
            (b"+OK\r\n", Value::Simple("OK".into())),
            (b"+\r\n", Value::Simple(String::new())),
            (
                b"-ERR unknown command\r\n",
                Value::Error("ERR unknown command".into()),
            ),
            (b":0\r\n", Value::Integer(0)),
            (b":1000\r\n", Value::Integer(1000)),
            (b":-42\r\n", Value::Integer(-42)),
            (b":9223372036854775807\r\n", Value::Integer(i64::MAX)),
            (b":-9223372036854775808\r\n", Value::Integer(i64::MIN)),
            (b"$5\r\nhello\r\n", bulk(b"hello")),
            (b"$0\r\n\r\n", bulk(b"")),
            (b"$-1\r\n", Value::Bulk(None)),
            (b"$6\r\na\r\nb\r\n\r\n", bulk(b"a\r\nb\r\n")),
            (
                b"*2\r\n:1\r\n+two\r\n",
                Value::Array(Some(vec![Value::Integer(1), Value::Simple("two".into())])),
            ),
            (b"*0\r\n", Value::Array(Some(vec![]))),
            (b"*-1\r\n", Value::Array(None)),
            (
                b"*2\r\n*2\r\n:1\r\n$-1\r\n*1\r\n*0\r\n",
                Value::Array(Some(vec![
                    Value::Array(Some(vec![Value::Integer(1), Value::Bulk(None)])),
                    Value::Array(Some(vec![Value::Array(Some(vec![]))])),
                ])),
            ),
            (
                b"*3\r\n$7\r\nmessage\r\n$6\r\nreverb\r\n$5\r\nhello\r\n",
                Value::Array(Some(vec![
                    bulk(b"message"),
                    bulk(b"reverb"),
                    bulk(b"hello"),
                ])),
            ),
            (
                b"*3\r\n$-1\r\n*-1\r\n-ERR x\r\n",
                Value::Array(Some(vec![
                    Value::Bulk(None),
                    Value::Array(None),
                    Value::Error("ERR x".into()),
                ])),
            ),
        ]
    }

    fn p(buf: &[u8]) -> Result<Option<(Value, usize)>, ParseError> {
        parse(buf, &Limits::default())
    }

    fn p_with(buf: &[u8], limits: Limits) -> Result<Option<(Value, usize)>, ParseError> {
        parse(buf, &limits)
    }

    #[test]
    fn every_fixture_at_every_split() {
        for (bytes, value) in fixtures() {
            for cut in 0..bytes.len() {
                assert_eq!(
                    p(&bytes[..cut]),
                    Ok(None),
                    "prefix {cut} of {:?}",
                    String::from_utf8_lossy(bytes)
                );
            }
            assert_eq!(p(bytes), Ok(Some((value.clone(), bytes.len()))));
            // Trailing bytes of a following value are left alone.
            let mut longer = bytes.to_vec();
            longer.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(p(&longer), Ok(Some((value, bytes.len()))));
        }
    }

    /// Feeds `chunks` into a buffer and drains complete values as a socket reader would.
    fn drain_stream<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Value> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match p(&buf) {
                    Ok(Some((v, used))) => {
                        out.push(v);
                        buf.drain(..used);
                    }
                    Ok(None) => break,
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
        }
        assert!(buf.is_empty(), "leftover bytes {buf:?}");
        out
    }

    #[test]
    fn accumulate_and_drain_back_to_back() {
        let fx = fixtures();
        let stream: Vec<u8> = fx.iter().flat_map(|(b, _)| b.iter().copied()).collect();
        let expected: Vec<Value> = fx.into_iter().map(|(_, v)| v).collect();
        for size in [1, 2, 3, 5, 7, 16, 64, stream.len()] {
            assert_eq!(
                drain_stream(stream.chunks(size)),
                expected,
                "chunk size {size}"
            );
        }
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(drain_stream([a, b]), expected, "split at {cut}");
        }
    }

    #[test]
    fn malformed_inputs() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"?foo\r\n", ParseError::BadType(b'?')),
            (b"%1\r\n", ParseError::BadType(b'%')),
            (b"\r\n", ParseError::BadType(b'\r')),
            (b"$-2\r\n", ParseError::BadLength),
            (b"*-5\r\n", ParseError::BadLength),
            (b"$abc\r\n", ParseError::BadLength),
            (b"$\r\n", ParseError::BadLength),
            (b"$+3\r\nabc\r\n", ParseError::BadLength),
            (b"*1x\r\n", ParseError::BadLength),
            (b"*99999999999999999999999\r\n", ParseError::BadLength),
            (b":12a\r\n", ParseError::BadInteger),
            (b":\r\n", ParseError::BadInteger),
            (b":-\r\n", ParseError::BadInteger),
            (b": 1\r\n", ParseError::BadInteger),
            (b":9223372036854775808\r\n", ParseError::BadInteger),
            (b":-9223372036854775809\r\n", ParseError::BadInteger),
            (b"$3\r\nabcX\r\n", ParseError::MissingCrLf),
            (b"$3\r\nabc\rX", ParseError::MissingCrLf),
            (b"$3\r\nabc\n", ParseError::MissingCrLf),
            (b"$3\r\nabcd", ParseError::MissingCrLf),
            (b"+OK\n", ParseError::MissingCrLf),
            (b"+O\rK\r\n", ParseError::MissingCrLf),
            (b":1\n", ParseError::MissingCrLf),
            (b"$3\n", ParseError::MissingCrLf),
            (b"*2\r\n:1\r\n?x\r\n", ParseError::BadType(b'?')),
            (b"*1\r\n*1\r\n$2\r\nabc\r\n", ParseError::MissingCrLf),
        ];
        for (bytes, err) in cases {
            assert_eq!(
                p(bytes),
                Err(err.clone()),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn malformed_numbers_rejected_before_terminator() {
        assert_eq!(p(b":12a"), Err(ParseError::BadInteger));
        assert_eq!(p(b"$x"), Err(ParseError::BadLength));
        assert_eq!(p(b"*--"), Err(ParseError::BadLength));
        assert_eq!(p(b":123456789012345678901"), Err(ParseError::BadInteger));
        assert_eq!(p(b"$123456789012345678901"), Err(ParseError::BadLength));
        // Plausible prefixes still wait for more input.
        assert_eq!(p(b":-12"), Ok(None));
        assert_eq!(p(b"$12"), Ok(None));
    }

    #[test]
    fn depth_limit() {
        let nested = |n: usize| {
            let mut v = b"*1\r\n".repeat(n);
            v.extend_from_slice(b":7\r\n");
            v
        };
        let mut expected = Value::Integer(7);
        for _ in 0..8 {
            expected = Value::Array(Some(vec![expected]));
        }
        let eight = nested(8);
        assert_eq!(p(&eight), Ok(Some((expected, eight.len()))));
        assert_eq!(p(&nested(9)), Err(ParseError::TooDeep));
        // Rejected before the inner elements arrive.
        assert_eq!(p(&b"*1\r\n".repeat(9)), Err(ParseError::TooDeep));
        // Very deep input is rejected without recursion.
        assert_eq!(p(&b"*1\r\n".repeat(100_000)), Err(ParseError::TooDeep));

        let shallow = || Limits {
            max_depth: 2,
            ..Limits::default()
        };
        assert_eq!(
            p_with(b"*1\r\n*1\r\n*0\r\n", shallow()),
            Err(ParseError::TooDeep)
        );
        assert_eq!(
            p_with(b"*1\r\n*0\r\n", shallow()),
            Ok(Some((
                Value::Array(Some(vec![Value::Array(Some(vec![]))])),
                8
            )))
        );
        // Null arrays are not containers and do not count.
        assert_eq!(
            p_with(b"*1\r\n*1\r\n*-1\r\n", shallow()),
            Ok(Some((
                Value::Array(Some(vec![Value::Array(Some(vec![Value::Array(None)]))])),
                13
            )))
        );
        let flat = || Limits {
            max_depth: 0,
            ..Limits::default()
        };
        assert_eq!(p_with(b"*0\r\n", flat()), Err(ParseError::TooDeep));
        assert_eq!(p_with(b":1\r\n", flat()), Ok(Some((Value::Integer(1), 4))));
    }

    #[test]
    fn size_limits() {
        let small = || Limits {
            max_depth: 8,
            max_bulk: 4,
            max_array: 2,
        };
        assert_eq!(
            p_with(b"$4\r\nabcd\r\n", small()),
            Ok(Some((bulk(b"abcd"), 10)))
        );
        assert_eq!(p_with(b"$5\r\n", small()), Err(ParseError::TooLarge));
        assert_eq!(
            p_with(b"*2\r\n:1\r\n:2\r\n", small()).map(|r| r.map(|(_, n)| n)),
            Ok(Some(12))
        );
        assert_eq!(p_with(b"*3\r\n", small()), Err(ParseError::TooLarge));
        assert_eq!(p_with(b"*1\r\n*3\r\n", small()), Err(ParseError::TooLarge));
        assert_eq!(
            p_with(b"+abcd\r\n", small()),
            Ok(Some((Value::Simple("abcd".into()), 7)))
        );
        assert_eq!(p_with(b"+abcde\r\n", small()), Err(ParseError::TooLarge));
        assert_eq!(p_with(b"-abcdef", small()), Err(ParseError::TooLarge));

        // Defaults: 64 MiB bulk, 1_000_000 elements, checked before any payload arrives.
        assert_eq!(p(b"$67108864\r\n"), Ok(None));
        assert_eq!(p(b"$67108865\r\n"), Err(ParseError::TooLarge));
        assert_eq!(p(b"*1000000\r\n"), Ok(None));
        assert_eq!(p(b"*1000001\r\n"), Err(ParseError::TooLarge));
        assert_eq!(p(b"$9223372036854775807\r\n"), Err(ParseError::TooLarge));
    }

    #[test]
    fn large_bulk_byte_by_byte_prefixes() {
        let payload = vec![b'x'; 4096];
        let mut bytes = b"$4096\r\n".to_vec();
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(b"\r\n");
        for cut in 0..bytes.len() {
            assert_eq!(p(&bytes[..cut]), Ok(None));
        }
        assert_eq!(
            p(&bytes),
            Ok(Some((Value::Bulk(Some(payload)), bytes.len())))
        );
    }

    #[test]
    fn invalid_utf8_in_simple_is_lossy() {
        assert_eq!(
            p(b"+a\xffb\r\n"),
            Ok(Some((Value::Simple("a\u{fffd}b".into()), 6)))
        );
    }

    #[test]
    fn display_messages() {
        assert_eq!(
            ParseError::BadType(b'?').to_string(),
            "RESP: unknown type byte 0x3f"
        );
        for e in [
            ParseError::BadLength,
            ParseError::BadInteger,
            ParseError::MissingCrLf,
            ParseError::TooDeep,
            ParseError::TooLarge,
        ] {
            assert!(e.to_string().starts_with("RESP: "));
        }
    }

    fn check_encode(args: &[&[u8]], expected: &[u8]) {
        let out = encode_command(args);
        assert_eq!(out, expected);
        assert_eq!(out.len(), encoded_len(args));
        assert_eq!(out.capacity(), out.len());
        let value = Value::Array(Some(args.iter().map(|a| bulk(a)).collect()));
        assert_eq!(p(&out), Ok(Some((value, out.len()))));
    }

    #[test]
    fn encode_known_commands() {
        check_encode(
            &[b"PUBLISH", b"reverb", br#"{"a":1}"#],
            b"*3\r\n$7\r\nPUBLISH\r\n$6\r\nreverb\r\n$7\r\n{\"a\":1}\r\n",
        );
        check_encode(
            &[b"SUBSCRIBE", b"reverb"],
            b"*2\r\n$9\r\nSUBSCRIBE\r\n$6\r\nreverb\r\n",
        );
        check_encode(
            &[b"AUTH", b"user", b"pass"],
            b"*3\r\n$4\r\nAUTH\r\n$4\r\nuser\r\n$4\r\npass\r\n",
        );
        check_encode(&[b"SELECT", b"0"], b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n");
        check_encode(&[b"PING"], b"*1\r\n$4\r\nPING\r\n");
        check_encode(&[], b"*0\r\n");
        check_encode(&[b""], b"*1\r\n$0\r\n\r\n");
    }

    #[test]
    fn encode_round_trips_binary_and_multi_digit_lengths() {
        let long = vec![b'z'; 12345];
        let binary: &[u8] = b"\r\n\0\xff*$-+:\r\n";
        let many: Vec<&[u8]> = (0..11).map(|_| binary).collect();
        for args in [vec![b"SET".as_slice(), b"k", &long], vec![binary], many] {
            let out = encode_command(&args);
            assert_eq!(out.capacity(), out.len());
            assert_eq!(out.len(), encoded_len(&args));
            let value = Value::Array(Some(args.iter().map(|a| bulk(a)).collect()));
            assert_eq!(p(&out), Ok(Some((value, out.len()))));
        }
        assert_eq!(decimal_len(0), 1);
        assert_eq!(decimal_len(9), 1);
        assert_eq!(decimal_len(10), 2);
        assert_eq!(decimal_len(usize::MAX), usize::MAX.to_string().len());
        let mut v = Vec::new();
        push_decimal(&mut v, usize::MAX);
        assert_eq!(v, usize::MAX.to_string().into_bytes());
    }
}
