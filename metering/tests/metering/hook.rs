use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corral_metering::{
    ExpansionHook, HookConfig, HookError, HookPayload, HookStats, HostEvent, Meter, Monitor, Probe,
    Resource, Thresholds,
};

/// One HTTP request as the listener saw it.
#[derive(Debug)]
pub(crate) struct Seen {
    pub(crate) request_line: String,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Vec<u8>,
}

fn read_request(stream: &mut TcpStream) -> Seen {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let (mut len, mut content_type) = (0usize, None);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap();
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().unwrap(),
            "content-type" => content_type = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    Seen {
        request_line: request_line.trim_end().to_string(),
        content_type,
        body,
    }
}

/// A real loopback HTTP listener answering each request with the next status
/// of `statuses`, reporting what it received.
pub(crate) fn listener(statuses: Vec<u16>) -> (String, mpsc::Receiver<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/expand", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for status in statuses {
            let (mut s, _) = l.accept().unwrap();
            let seen = read_request(&mut s);
            let reply =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            s.write_all(reply.as_bytes()).unwrap();
            let _ = tx.send(seen);
        }
    });
    (url, rx)
}

pub(crate) fn wait_for(hook: &ExpansionHook, done: impl Fn(&HookStats) -> bool) -> HookStats {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = hook.stats();
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn quick(cfg: HookConfig) -> HookConfig {
    cfg.backoff(Duration::from_millis(10), Duration::from_millis(40))
        .timeout(Duration::from_secs(5))
}

fn crossing() -> HookPayload {
    HookPayload::new(
        HostEvent::ThresholdCrossed {
            resource: Resource::Disk,
            value: 0.9,
            threshold: 0.8,
        },
        "node-b",
        42,
        Probe {
            disk_total: 10,
            disk_available: 1,
            ..Probe::default()
        },
    )
}

#[test]
fn monitor_crossing_posts_json_to_a_real_listener_once() {
    let (url, seen) = listener(vec![200, 200]);
    let hook = ExpansionHook::start(quick(HookConfig::webhook(url))).unwrap();
    let mut used = [50u64, 85, 90, 70, 82].into_iter();
    let probe = move || {
        let u = used.next().unwrap_or(0);
        Probe {
            ram_total: 100,
            ram_available: 100 - u,
            cpus: 2,
            ..Probe::default()
        }
    };
    let mut mon = Monitor::new(Meter::new(), probe, Thresholds::default())
        .unwrap()
        .with_hook(hook.clone())
        .node("node-a");
    for _ in 0..3 {
        mon.tick(Instant::now()); // 50 %, 85 % (crosses), 90 %
    }
    let s = wait_for(&hook, |s| s.delivered == 1);
    assert_eq!(
        (s.fired, s.attempts, s.delivered),
        (1, 1, 1),
        "fired once for 85 and 90"
    );

    let got = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(got.request_line, "POST /expand HTTP/1.1");
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(json["event"], "threshold_crossed");
    assert_eq!(json["resource"], "ram");
    assert_eq!(json["value"], 0.85);
    assert_eq!(json["threshold"], 0.8);
    assert_eq!(json["node"], "node-a");
    assert_eq!(json["probe"]["ram_total"], 100);
    assert_eq!(json["probe"]["ram_available"], 15);
    assert!(json["at_unix_ms"].as_i64().unwrap() > 1_700_000_000_000);

    mon.tick(Instant::now()); // 70 %: re-armed, no hook
    mon.tick(Instant::now()); // 82 %: crosses again
    let s = wait_for(&hook, |s| s.delivered == 2);
    assert_eq!((s.fired, s.delivered), (2, 2));
    let got = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(json["value"], 0.82);
}

#[test]
fn failing_webhook_is_retried_with_backoff_until_it_answers() {
    let (url, seen) = listener(vec![500, 503, 200]);
    let hook = ExpansionHook::start(quick(HookConfig::webhook(url)).attempts(5)).unwrap();
    hook.fire(crossing()).unwrap();
    let s = wait_for(&hook, |s| s.delivered == 1);
    assert_eq!(
        (s.attempts, s.failed_attempts, s.delivered, s.given_up),
        (3, 2, 1, 0)
    );
    assert_eq!(
        hook.last_error().as_deref(),
        Some("webhook answered HTTP 503")
    );
    let bodies: Vec<_> = (0..3)
        .map(|_| seen.recv_timeout(Duration::from_secs(5)).unwrap().body)
        .collect();
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "the same event each time"
    );
}

#[test]
fn unreachable_webhook_gives_up_after_the_last_attempt() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again
    let hook = ExpansionHook::start(
        quick(HookConfig::webhook(format!("http://127.0.0.1:{port}/x"))).attempts(3),
    )
    .unwrap();
    hook.fire(crossing()).unwrap();
    let s = wait_for(&hook, |s| s.given_up == 1);
    assert_eq!(
        (s.attempts, s.failed_attempts, s.delivered, s.given_up),
        (3, 3, 0, 1)
    );
    assert!(
        hook.last_error()
            .unwrap()
            .starts_with("webhook request failed")
    );
}

#[test]
fn firing_never_waits_for_a_stuck_hook() {
    // A listener that accepts and never answers: the delivery thread is stuck.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    let (tx, accepted) = mpsc::channel();
    std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        drop(s);
    });
    let hook = ExpansionHook::start(
        HookConfig::webhook(url)
            .queue(2)
            .attempts(1)
            .timeout(Duration::from_secs(2)),
    )
    .unwrap();
    hook.fire(crossing()).unwrap();
    accepted.recv_timeout(Duration::from_secs(10)).unwrap();
    // The first event is in flight; two more fit in the queue; the fourth is dropped, not waited on.
    hook.fire(crossing()).unwrap();
    hook.fire(crossing()).unwrap();
    assert!(matches!(hook.fire(crossing()), Err(HookError::QueueFull)));
    let s = hook.stats();
    assert_eq!((s.fired, s.dropped, s.delivered), (3, 1, 0));
}

#[test]
fn https_is_refused_up_front() {
    let err = ExpansionHook::start(HookConfig::webhook("https://example.com/x")).unwrap_err();
    assert!(matches!(err, HookError::UnsupportedUrl { ref url } if url == "https://example.com/x"));
}

#[test]
fn command_hook_gets_the_json_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("event.json");
    let cfg = HookConfig::command("sh", ["-c", "cat > \"$0\"", out.to_str().unwrap()]);
    let hook = ExpansionHook::start(quick(cfg)).unwrap();
    hook.fire(crossing()).unwrap();
    let s = wait_for(&hook, |s| s.delivered == 1);
    assert_eq!((s.attempts, s.delivered), (1, 1));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(json["event"], "threshold_crossed");
    assert_eq!(json["resource"], "disk");
    assert_eq!(json["node"], "node-b");
    assert_eq!(json["at_unix_ms"], 42);
    assert_eq!(json["probe"]["disk_available"], 1);
}

#[test]
fn failing_command_is_retried_then_given_up() {
    let hook = ExpansionHook::start(quick(HookConfig::command("sh", ["-c", "exit 3"])).attempts(2))
        .unwrap();
    hook.fire(crossing()).unwrap();
    let s = wait_for(&hook, |s| s.given_up == 1);
    assert_eq!((s.attempts, s.failed_attempts, s.given_up), (2, 2, 1));
    assert!(
        hook.last_error().unwrap().contains("exit status: 3"),
        "{:?}",
        hook.last_error()
    );
}
