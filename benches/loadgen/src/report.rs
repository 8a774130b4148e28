//! `loadgen table`: turn the JSON lines of runs into a markdown table.

use serde_json::Value;

/// A number for a table cell: `-` when absent, integers without a fraction.
fn num(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            Some(f) => format!("{f}"),
            None => n.to_string(),
        },
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn mib(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |b| format!("{:.1} MiB", b / 1_048_576.0))
}

/// `p50 / p90 / p99 / p999 / max` of a latency summary, in ms.
fn lat(v: &Value) -> String {
    format!(
        "{} / {} / {} / {} / {} ms",
        num(&v["p50"]),
        num(&v["p90"]),
        num(&v["p99"]),
        num(&v["p999"]),
        num(&v["max"])
    )
}

fn loss(v: &Value) -> String {
    format!(
        "{} of {} received, {} lost, {} duplicate",
        num(&v["received"]),
        num(&v["expected"]),
        num(&v["lost"]),
        num(&v["duplicates"])
    )
}

/// (run, key figures) of one report line.
pub fn row(r: &Value) -> (String, String) {
    let mode = r["mode"].as_str().unwrap_or("?");
    let idle = format!("idle RSS {}", mib(&r["server"]["rss_idle_bytes"]));
    let tls = if r["tls"] == true { " TLS" } else { "" };
    match mode {
        "conns" => {
            let mut figures = format!(
                "{} established, {} failed; connect p50/p99 {} / {} ms; RSS {} → {}; \
                 **{} B per connection**; {idle}",
                num(&r["established"]),
                num(&r["failures"]),
                num(&r["connect_ms"]["p50"]),
                num(&r["connect_ms"]["p99"]),
                mib(&r["rss_before_bytes"]),
                mib(&r["rss_after_bytes"]),
                num(&r["rss_per_conn_bytes"]),
            );
            // runs from before these were measured keep their old row
            if !r["server_cpu_s"].is_null() {
                figures.push_str(&format!(
                    "; **server CPU {} s** (storm {} s)",
                    num(&r["server_cpu_s"]),
                    num(&r["server_cpu_setup_s"])
                ));
            }
            if let Some(n) = r["subscription_counts_received"].as_u64() {
                figures.push_str(&format!("; {n} subscription counts received"));
            }
            if !r["handshakes_per_server_cpu_s"].is_null() {
                figures.push_str(&format!(
                    "; **{} TLS handshakes per server CPU-second**",
                    num(&r["handshakes_per_server_cpu_s"])
                ));
            }
            (format!("conns {}{tls}", num(&r["connections"])), figures)
        }
        "fanout" => (
            format!(
                "fanout {} subs / {} ch, {}/s{tls}",
                num(&r["subscribers"]),
                num(&r["channels"]),
                num(&r["rate"])
            ),
            format!(
                "{} deliveries/s; {}; latency p50/p90/p99/p999/max {}; server CPU {} s, \
                 **{} deliveries per server CPU-second**",
                num(&r["deliveries_per_sec"]),
                loss(&r["loss"]),
                lat(&r["latency_ms"]),
                num(&r["server_cpu_s"]),
                num(&r["deliveries_per_server_cpu_s"]),
            ),
        ),
        "cluster" => {
            let local = if r["local_too"] == true {
                format!(
                    "; same-node (node 1): {}, latency {}",
                    loss(&r["loss_local"]),
                    lat(&r["latency_ms_local"])
                )
            } else {
                String::new()
            };
            (
                format!(
                    "cluster {} nodes, {} subs / {} ch, {}/s",
                    num(&r["nodes"]),
                    num(&r["subscribers"]),
                    num(&r["channels"]),
                    num(&r["rate"])
                ),
                format!(
                    "cross-node through Redis: {}; **latency p50/p90/p99/p999/max {}**{local}; \
                     {} deliveries/s; CPU of the nodes {} s, of redis-server {} s",
                    loss(&r["loss"]),
                    lat(&r["latency_ms"]),
                    num(&r["deliveries_per_sec"]),
                    num(&r["server_cpu_s"]),
                    num(&r["redis_cpu_s"]),
                ),
            )
        }
        "api" => (
            format!("api, {} connections", num(&r["connections"])),
            format!(
                "**{} publishes/s**; status {}; {} HTTP errors; request latency \
                 p50/p90/p99/p999/max {}; subscriber: {}",
                num(&r["requests_per_sec"]),
                r["publish_status"],
                num(&r["http_errors"]),
                lat(&r["request_latency_ms"]),
                loss(&r["loss"]),
            ),
        ),
        "clientevents" => (
            format!(
                "clientevents {} members in groups of {}, {}/s",
                num(&r["members"]),
                num(&r["group_size"]),
                num(&r["rate"])
            ),
            format!(
                "{} events sent; {}; latency p50/p90/p99/p999/max {}; server CPU {} s",
                num(&r["events_sent"]),
                loss(&r["loss"]),
                lat(&r["latency_ms"]),
                num(&r["server_cpu_s"]),
            ),
        ),
        "slowconsumer" => {
            let ends: Vec<String> = r["slow"]
                .as_array()
                .map(|a| {
                    let mut v: Vec<String> = a
                        .iter()
                        .map(|s| match (&s["close_code"], &s["pusher_error"]) {
                            (Value::Number(c), _) => format!("close {c}"),
                            (_, Value::Number(e)) => format!("error {e}"),
                            _ => s["ended"].as_str().unwrap_or("open").to_string(),
                        })
                        .collect();
                    v.dedup();
                    v
                })
                .unwrap_or_default();
            (
                format!(
                    "slowconsumer {} subs + {} slow, {}/s × {} B",
                    num(&r["subscribers"]),
                    num(&r["slow_clients"]),
                    num(&r["rate"]),
                    num(&r["payload"])
                ),
                format!(
                    "**{} of {} slow clients dropped** ({}), server count back to normal {} ms \
                     after they joined; others: {}; latency before {}, with slow clients {}",
                    num(&r["slow_dropped"]),
                    num(&r["slow_clients"]),
                    ends.join(", "),
                    num(&r["server_count_back_to_normal_ms_after_slow_start"]),
                    loss(&r["loss"]),
                    lat(&r["latency_ms_before_slow"]),
                    lat(&r["latency_ms_with_slow"]),
                ),
            )
        }
        "soak" => {
            let flat = |v: &Value, unit: &dyn Fn(&Value) -> String| {
                format!(
                    "{} → {} (min {}, max {}), drift {} (bound {}, {})",
                    unit(&v["q2_mean"]),
                    unit(&v["last"]),
                    unit(&v["min"]),
                    unit(&v["max"]),
                    unit(&v["drift"]),
                    unit(&v["bound"]),
                    if v["flat"] == true {
                        "flat"
                    } else {
                        "**not flat**"
                    },
                )
            };
            let c = &r["churn_counts"];
            (
                format!(
                    "soak {} s: {} subs / {} ch, {}/s; churn {}",
                    num(&r["duration_s"]),
                    num(&r["subscribers"]),
                    num(&r["channels"]),
                    num(&r["rate"]),
                    num(&r["churn"]),
                ),
                format!(
                    "steady subscribers: {}; RSS start {}, after warm-up {}; fds start {}, \
                     after warm-up {}; churn: {} connects, {} clean closes, {} FIN + {} RST + \
                     {} early drops, {} errors",
                    loss(&r["loss"]),
                    mib(&r["rss_start_bytes"]),
                    flat(&r["rss_after_warmup"], &mib),
                    num(&r["fds_start"]),
                    flat(&r["fds_after_warmup"], &num),
                    num(&c["connects"]),
                    num(&c["clean_closes"]),
                    num(&c["abrupt_fin"]),
                    num(&c["abrupt_rst"]),
                    num(&c["early_drops"]),
                    num(&c["errors"]),
                ),
            )
        }
        other => (other.to_string(), String::new()),
    }
}

/// The markdown table of every JSON line in `input` (other lines are skipped).
/// With `--webhook`: what to add to the run's label and to its figures.
fn webhooks(r: &Value) -> Option<(String, String)> {
    let w = r.get("webhooks").filter(|w| w.is_object())?;
    let names = w["by_name"].as_object().map_or(String::new(), |m| {
        m.iter()
            .map(|(k, v)| format!("{k} {}", num(v)))
            .collect::<Vec<_>>()
            .join(", ")
    });
    Some((
        " + webhook".to_string(),
        format!(
            "; webhooks: {} events in {} requests ({names}), **{} events/s**, {} bad",
            num(&w["events"]),
            num(&w["requests"]),
            num(&w["events_per_s"]),
            num(&w["bad_requests"]),
        ),
    ))
}

pub fn table(input: &str) -> String {
    let mut out = String::from("| run | ok | key figures | command |\n|---|---|---|---|\n");
    for line in input.lines() {
        let Ok(r) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        if !r.is_object() || r["mode"].is_null() {
            continue;
        }
        let (mut run, mut figures) = row(&r);
        if let Some((label, hooks)) = webhooks(&r) {
            run.push_str(&label);
            figures.push_str(&hooks);
        }
        let ok = match (&r["ok"], &r["timed_out"]) {
            (_, Value::Bool(true)) => "timed out",
            (Value::Bool(true), _) => "yes",
            _ => "no",
        };
        let cmd = r["command"].as_str().unwrap_or("").replace('|', "\\|");
        out.push_str(&format!("| {run} | {ok} | {figures} | `{cmd}` |\n"));
    }
    out
}

/// What turns subscription counts on for a spawned server.
const COUNTS_ON: &str = "REVERB_APP_ENABLE_SUBSCRIPTION_COUNT=true";

/// The markdown of `conns` runs with subscription counts on and off
/// (`loadgen countsmd`): their table, then each side's server CPU (every
/// run and the mean) and the ratio of the means, which issue 13 bounds by 2.
pub fn counts_md(input: &str) -> String {
    let mut out = table(input);
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for line in input.lines() {
        let Ok(r) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        let Some(cpu) = r["server_cpu_s"].as_f64() else {
            continue;
        };
        let cmd = r["command"].as_str().unwrap_or("");
        if cmd.contains(COUNTS_ON) {
            &mut on
        } else {
            &mut off
        }
        .push(cpu);
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let list = |v: &[f64]| {
        v.iter()
            .map(|c| format!("{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.push('\n');
    if let (Some(a), Some(b)) = (mean(&off), mean(&on)) {
        out.push_str(&format!(
            "Server CPU, counts off: {} s (mean {:.3} s); counts on: {} s (mean {:.3} s); \
             **on / off = {:.2}**.\n",
            list(&off),
            a,
            list(&on),
            b,
            b / a.max(1e-9)
        ));
    } else {
        out.push_str("Server CPU: not measured on both sides.\n");
    }
    out
}

/// The markdown of soak runs (`loadgen soakmd`): each run's table row, then its samples,
/// thinned to at most `rows` rows (first and last kept).
pub fn soak_samples(input: &str, rows: usize) -> String {
    let mut out = String::new();
    for line in input.lines() {
        let Ok(r) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        if r["mode"] != "soak" {
            continue;
        }
        out.push_str(&table(line));
        let samples = r["samples"].as_array().cloned().unwrap_or_default();
        let step = samples.len().div_ceil(rows.max(2) - 1).max(1);
        let keep: Vec<&Value> = samples
            .iter()
            .enumerate()
            .filter(|(i, _)| i % step == 0 || i + 1 == samples.len())
            .map(|(_, x)| x)
            .collect();
        out.push_str(&format!(
            "\nSamples ({} of {}, every {} s; churn open: churning connections set up at that \
             moment; p99: delivery latency over the preceding interval):\n\n\
             | t (s) | server RSS | server fds | churn open | churn connects | deliveries | p99 ms |\n\
             |---|---|---|---|---|---|---|\n",
            keep.len(),
            samples.len(),
            num(&r["sample_s"]),
        ));
        for x in keep {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                num(&x["t_s"]),
                mib(&x["rss_bytes"]),
                num(&x["fds"]),
                num(&x["churn_open"]),
                num(&x["churn_connects"]),
                num(&x["delivered"]),
                num(&x["latency_p99_ms"]),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells() {
        assert_eq!(num(&serde_json::json!(5.0)), "5");
        assert_eq!(num(&serde_json::json!(0.25)), "0.25");
        assert_eq!(num(&Value::Null), "-");
        assert_eq!(mib(&serde_json::json!(2_621_440)), "2.5 MiB");
    }

    #[test]
    fn counts_md_compares_the_mean_cpu_of_both_sides() {
        let line = |cpu: f64, on: bool| {
            let env = if on {
                " --env REVERB_APP_ENABLE_SUBSCRIPTION_COUNT=true"
            } else {
                ""
            };
            format!(
                r#"{{"mode":"conns","command":"loadgen conns{env}","ok":true,"server_cpu_s":{cpu}}}"#
            )
        };
        let input = [
            line(1.0, false),
            line(1.5, true),
            line(2.0, false),
            line(2.0, true),
        ]
        .join("\n");
        let md = counts_md(&input);
        assert_eq!(
            md.lines().filter(|l| l.starts_with("| conns")).count(),
            4,
            "{md}"
        );
        assert!(
            md.contains("counts off: 1, 2 s (mean 1.500 s); counts on: 1.5, 2 s (mean 1.750 s); **on / off = 1.17**"),
            "{md}"
        );
    }

    #[test]
    fn conns_rows_show_the_server_cpu_and_the_counts_when_measured() {
        let input = concat!(
            r#"{"mode":"conns","command":"c","ok":true,"connections":2,"established":2,"#,
            r#""server_cpu_s":1.25,"server_cpu_setup_s":1.0,"subscription_counts_received":3}"#,
            "\n"
        );
        let t = table(input);
        assert!(
            t.contains("; **server CPU 1.25 s** (storm 1 s); 3 subscription counts received |"),
            "{t}"
        );
    }

    #[test]
    fn tls_runs_are_labelled_and_show_handshakes() {
        let input = concat!(
            r#"{"mode":"conns","command":"c","ok":true,"connections":2,"established":2,"#,
            r#""tls":true,"handshakes_per_server_cpu_s":4000}"#,
            "\n",
            r#"{"mode":"fanout","command":"f","ok":true,"subscribers":3,"channels":1,"#,
            r#""rate":5,"tls":true}"#,
            "\n"
        );
        let t = table(input);
        let rows: Vec<&str> = t.lines().skip(2).collect();
        assert!(rows[0].starts_with("| conns 2 TLS | yes |"), "{t}");
        assert!(
            rows[0].contains("; **4000 TLS handshakes per server CPU-second** |"),
            "{t}"
        );
        assert!(
            rows[1].starts_with("| fanout 3 subs / 1 ch, 5/s TLS | yes |"),
            "{t}"
        );
    }

    #[test]
    fn webhook_runs_say_what_the_receiver_got() {
        let input = concat!(
            r#"{"mode":"clientevents","command":"x","ok":true,"members":2,"group_size":2,"#,
            r#""rate":10,"events_sent":5,"webhooks":{"requests":3,"events":5,"bad_requests":0,"#,
            r#""by_name":{"client_event":5},"events_per_s":250.5}}"#,
            "\n",
        );
        let t = table(input);
        let row = t.lines().nth(2).unwrap();
        assert!(
            row.starts_with("| clientevents 2 members in groups of 2, 10/s + webhook | yes |"),
            "{row}"
        );
        assert!(
            row.contains(
                "webhooks: 5 events in 3 requests (client_event 5), **250.5 events/s**, 0 bad"
            ),
            "{row}"
        );
    }

    #[test]
    fn table_of_runs() {
        let input = concat!(
            "some noise\n",
            r#"{"mode":"conns","command":"loadgen conns --n 2","ok":true,"timed_out":false,"#,
            r#""connections":2,"established":2,"failures":0,"connect_ms":{"p50":0.1,"p99":0.2},"#,
            r#""rss_before_bytes":1048576,"rss_after_bytes":2097152,"rss_per_conn_bytes":512.0,"#,
            r#""server":{"rss_idle_bytes":1048576}}"#,
            "\n",
            r#"{"mode":"fanout","command":"a|b","ok":false,"subscribers":10,"channels":1,"#,
            r#""rate":5.0,"loss":{"expected":10,"received":9,"lost":1,"duplicates":0},"#,
            r#""latency_ms":{"p50":1,"p90":2,"p99":3,"p999":4,"max":5}}"#,
            "\n",
            r#"{"mode":"cluster","command":"c","ok":true,"nodes":3,"subscribers":1000,"#,
            r#""channels":10,"rate":200.0,"loss":{"expected":4,"received":4,"lost":0,"#,
            r#""duplicates":0},"latency_ms":{"p50":1,"p90":2,"p99":3,"p999":4,"max":5},"#,
            r#""deliveries_per_sec":20000,"server_cpu_s":1.5,"redis_cpu_s":0.25}"#,
            "\n",
            r#"{"mode":"cluster","command":"c","ok":true,"nodes":1,"local_too":true,"#,
            r#""loss_local":{"expected":2,"received":2,"lost":0,"duplicates":0},"#,
            r#""latency_ms_local":{"p50":0.5,"p90":1,"p99":1,"p999":1,"max":1}}"#,
            "\n"
        );
        let t = table(input);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 6, "{t}");
        assert!(!lines[2].contains("server CPU"), "{}", lines[2]);
        assert!(lines[2].starts_with("| conns 2 | yes |"), "{}", lines[2]);
        assert!(lines[2].contains("**512 B per connection**"));
        assert!(lines[2].contains("RSS 1.0 MiB → 2.0 MiB"));
        assert!(lines[2].ends_with("| `loadgen conns --n 2` |"));
        assert!(lines[3].contains("| no |"));
        assert!(lines[3].contains("9 of 10 received, 1 lost"));
        assert!(lines[3].contains("1 / 2 / 3 / 4 / 5 ms"));
        assert!(lines[3].contains("`a\\|b`"));
        assert!(
            lines[4].starts_with("| cluster 3 nodes, 1000 subs / 10 ch, 200/s | yes |"),
            "{}",
            lines[4]
        );
        assert!(lines[4].contains("cross-node through Redis: 4 of 4 received, 0 lost"));
        assert!(lines[4].contains("**latency p50/p90/p99/p999/max 1 / 2 / 3 / 4 / 5 ms**"));
        assert!(lines[4].contains("CPU of the nodes 1.5 s, of redis-server 0.25 s"));
        assert!(!lines[4].contains("same-node"));
        assert!(lines[5].contains("same-node (node 1): 2 of 2 received"));
        assert!(lines[5].contains("latency 0.5 / 1 / 1 / 1 / 1 ms"));
        let soak = concat!(
            r#"{"mode":"soak","command":"s","ok":true,"duration_s":60,"subscribers":5,"#,
            r#""channels":1,"rate":2,"churn":3,"rss_start_bytes":1048576,"#,
            r#""loss":{"expected":4,"received":4,"lost":0,"duplicates":0},"#,
            r#""rss_after_warmup":{"q2_mean":2097152,"last":2097152,"min":1048576,"#,
            r#""max":3145728,"drift":0,"bound":4194304,"flat":true},"fds_start":7,"#,
            r#""fds_after_warmup":{"q2_mean":20,"last":21,"min":19,"max":22,"drift":1.5,"#,
            r#""bound":10,"flat":false},"churn_counts":{"connects":9,"clean_closes":4,"#,
            r#""abrupt_fin":2,"abrupt_rst":1,"early_drops":1,"errors":0}}"#
        );
        let t = table(soak);
        let line = t.lines().nth(2).unwrap();
        assert!(
            line.starts_with("| soak 60 s: 5 subs / 1 ch, 2/s; churn 3 | yes |"),
            "{line}"
        );
        assert!(line.contains("4 of 4 received, 0 lost"));
        assert!(line.contains("after warm-up 2.0 MiB → 2.0 MiB (min 1.0 MiB, max 3.0 MiB), drift 0.0 MiB (bound 4.0 MiB, flat)"), "{line}");
        assert!(line.contains("fds start 7, after warm-up 20 → 21 (min 19, max 22), drift 1.5 (bound 10, **not flat**)"), "{line}");
        assert!(
            line.contains("9 connects, 4 clean closes, 2 FIN + 1 RST + 1 early drops, 0 errors")
        );
        let mut v: Value = serde_json::from_str(soak).unwrap();
        v["sample_s"] = serde_json::json!(5);
        v["samples"] = (0..10)
            .map(|i| serde_json::json!({"t_s": i * 5, "rss_bytes": 1048576, "fds": 20 + i}))
            .collect();
        let md = soak_samples(&format!("noise\n{v}\n"), 4);
        assert!(md.starts_with("| run | ok |"), "{md}");
        assert!(md.contains("Samples (4 of 10, every 5 s;"), "{md}");
        let rows: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| ") && l.contains("MiB |"))
            .collect();
        assert_eq!(rows.len(), 4, "{md}");
        assert!(rows[0].starts_with("| 0 | 1.0 MiB | 20 |"), "{md}");
        assert!(rows[3].starts_with("| 45 | 1.0 MiB | 29 |"), "{md}");
    }
}
