//! The JSON messages the server sends, built as bytes with serde_json's
//! string escaping. Shapes follow Reverb (reference section 1.2): key order
//! `event`, `data`, `channel`; `data` is a JSON *string* in every message the
//! server creates; client events carry `data` as an object.

use serde_json::Value;

/// Append `s` as a JSON string literal.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `{"event":E[,"data":"<data as JSON string>"][,"channel":C]}`
pub fn event(event: &str, data: Option<&str>, channel: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        32 + event.len() + data.map_or(0, |d| d.len() + 8) + channel.map_or(0, str::len),
    );
    out.extend_from_slice(b"{\"event\":");
    push_str(&mut out, event);
    if let Some(d) = data {
        out.extend_from_slice(b",\"data\":");
        push_str(&mut out, d);
    }
    if let Some(c) = channel {
        out.extend_from_slice(b",\"channel\":");
        push_str(&mut out, c);
    }
    out.push(b'}');
    out
}

/// `pusher:error` with `{"code":N,"message":M}` as its data string; never a channel.
pub fn error(code: u16, message: &str) -> Vec<u8> {
    let data = serde_json::json!({ "code": code, "message": message }).to_string();
    event("pusher:error", Some(&data), None)
}

pub fn connection_established(socket_id: &str, activity_timeout: u64) -> Vec<u8> {
    let mut data = String::with_capacity(64);
    data.push_str("{\"socket_id\":\"");
    data.push_str(socket_id);
    data.push_str("\",\"activity_timeout\":");
    data.push_str(&activity_timeout.to_string());
    data.push('}');
    event("pusher:connection_established", Some(&data), None)
}

/// A client event as re-broadcast: `{"event","channel","data"[,"user_id"]}`,
/// data as JSON (object, array or null).
pub fn client_event(event: &str, channel: &str, data: &Value, user_id: Option<&Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + event.len() + channel.len());
    out.extend_from_slice(b"{\"event\":");
    push_str(&mut out, event);
    out.extend_from_slice(b",\"channel\":");
    push_str(&mut out, channel);
    out.extend_from_slice(b",\"data\":");
    let _ = serde_json::to_writer(&mut out, data);
    if let Some(u) = user_id {
        out.extend_from_slice(b",\"user_id\":");
        let _ = serde_json::to_writer(&mut out, u);
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    // reference 9, EventTest 6 "can correctly format a payload"
    #[test]
    fn formats_payloads() {
        assert_eq!(
            s(event(
                "pusher:foo",
                Some(r#"{"bar":"baz"}"#),
                Some("test-channel")
            )),
            r#"{"event":"pusher:foo","data":"{\"bar\":\"baz\"}","channel":"test-channel"}"#
        );
        assert_eq!(
            s(event("pusher:foo", None, None)),
            r#"{"event":"pusher:foo"}"#
        );
    }

    // reference 9, EventTest 7 "can correctly format an internal payload"
    #[test]
    fn formats_internal_payloads() {
        assert_eq!(
            s(event("pusher_internal:foo", Some("{}"), None)),
            r#"{"event":"pusher_internal:foo","data":"{}"}"#
        );
    }

    // reference 9, EventTest 1 "can send an acknowledgement"
    #[test]
    fn acknowledgement_shape() {
        assert_eq!(
            s(connection_established("123.456", 30)),
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":30}"}"#
        );
    }

    #[test]
    fn error_shape() {
        assert_eq!(
            s(error(4009, "Connection is unauthorized")),
            r#"{"event":"pusher:error","data":"{\"code\":4009,\"message\":\"Connection is unauthorized\"}"}"#
        );
    }

    #[test]
    fn client_event_shape() {
        let data = serde_json::json!({"id":123,"name":"Joe Dixon"});
        assert_eq!(
            s(client_event(
                "client-start-typing",
                "private-x",
                &data,
                Some(&Value::from("1"))
            )),
            r#"{"event":"client-start-typing","channel":"private-x","data":{"id":123,"name":"Joe Dixon"},"user_id":"1"}"#
        );
    }
}
