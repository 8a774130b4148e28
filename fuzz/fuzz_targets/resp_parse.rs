//! The RESP parser (`redis::resp::parse`) on any bytes, with small and
//! default limits. Checked: a value used no more bytes than there were,
//! parses the same from exactly those bytes, a shorter prefix is
//! incomplete, and what the parser returns respects the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revurb::redis::resp::{self, Limits, Value};

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(Some(items)) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn check_limits(v: &Value, limits: &Limits) {
    match v {
        Value::Array(Some(items)) => {
            assert!(items.len() <= limits.max_array);
            for i in items {
                check_limits(i, limits);
            }
        }
        Value::Bulk(Some(b)) => assert!(b.len() <= limits.max_bulk),
        _ => {}
    }
}

fuzz_target!(|input: (bool, u16, &[u8])| {
    let (small, cut, buf) = input;
    let limits = if small {
        Limits {
            max_depth: 3,
            max_bulk: 64,
            max_array: 8,
        }
    } else {
        Limits::default()
    };
    if let Ok(Some((value, used))) = resp::parse(buf, &limits) {
        assert!(used > 0 && used <= buf.len());
        assert!(depth(&value) <= limits.max_depth, "{value:?}");
        check_limits(&value, &limits);
        assert_eq!(
            resp::parse(&buf[..used], &limits),
            Ok(Some((value.clone(), used)))
        );
        let cut = usize::from(cut) % used;
        assert_eq!(resp::parse(&buf[..cut], &limits), Ok(None), "prefix {cut}");
    }
});
