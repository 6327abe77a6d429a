//! The listener under hostile and broken clients, as a component of the database server must
//! hold: a request that errors, slow clients (slowloris, in the headers and in the body),
//! oversized headers, bytes that are not UTF-8, ten thousand idle connections. None may take
//! a worker down or keep others from being served; reloadable settings apply on reload.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pg_oauth_harness::{connect_from, free_port, Cluster};
use reqwest::blocking::Client as Http;
use reqwest::StatusCode;
use serde_json::Value;

const SECRET: &str = "a-long-enough-secret-for-the-listener";

fn listener(timeout_ms: u32) -> (Cluster, String) {
    let port = free_port();
    let listen = format!("'127.0.0.1:{port}'");
    let timeout = timeout_ms.to_string();
    let cluster = Cluster::start(
        "listener-abuse",
        &[
            ("shared_preload_libraries", "'pg_oauth'"),
            ("pg_oauth.http_listen", &listen),
            ("pg_oauth.http_workers", "2"),
            ("pg_oauth.http_timeout", &timeout),
            ("pg_oauth.issuer", "'https://before.example'"),
        ],
    );
    cluster
        .connect("postgres")
        .batch_execute(&format!(
            "CREATE EXTENSION pg_oauth;
             INSERT INTO oauth.client (id, secret, scope)
             VALUES ('good', '{SECRET}', '{{read}}'), ('boom', '{SECRET}', '{{read}}');"
        ))
        .unwrap();
    (cluster, format!("127.0.0.1:{port}"))
}

fn worker_pids(cluster: &Cluster) -> Vec<i32> {
    let mut pids: Vec<i32> = cluster
        .connect("postgres")
        .query(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_oauth http listener'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    pids.sort();
    pids
}

fn token(http: &Http, address: &str, client: &str) -> StatusCode {
    http.post(format!("http://{address}/token"))
        .basic_auth(client, Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap()
        .status()
}

/// Everything the server sends on `stream` until it closes it (or `limit` passes).
fn read_all(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (answer, started.elapsed())
}

fn status_line(answer: &[u8]) -> String {
    String::from_utf8_lossy(answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn an_error_in_one_request_answers_it_500_and_no_other() {
    let (cluster, address) = listener(10_000);
    let before = worker_pids(&cluster);
    // A DBA's trigger that fails every token of one client: an SQL error inside the handler.
    cluster
        .connect("postgres")
        .batch_execute(
            "CREATE FUNCTION public.refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.client_id = 'boom' THEN RAISE EXCEPTION 'boom refused by a trigger'; END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_boom BEFORE INSERT ON oauth.session
               FOR EACH ROW EXECUTE FUNCTION public.refuse_boom();",
        )
        .unwrap();
    // Both clients at once from many connections, so failing and succeeding requests share
    // the workers' batches.
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let address = address.clone();
            std::thread::spawn(move || {
                let http = Http::new();
                let client = if i % 2 == 0 { "good" } else { "boom" };
                (0..25)
                    .map(|_| (client, token(&http, &address, client)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut answered = 0;
    for thread in threads {
        for (client, status) in thread.join().unwrap() {
            let expected = if client == "good" {
                StatusCode::OK
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            assert_eq!(status, expected, "{client}");
            answered += 1;
        }
    }
    assert_eq!(answered, 400);
    let issued: i64 = cluster
        .connect("postgres")
        .query_one(
            "SELECT count(*) FROM oauth.session WHERE client_id = 'good'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(issued, 200, "every 200 is a committed token, no more");
    assert_eq!(worker_pids(&cluster), before, "no worker restarted");
    assert!(cluster.log().contains("boom refused by a trigger"));
}

#[test]
fn slow_oversized_and_malformed_clients_are_cut_off_and_others_served() {
    let (cluster, address) = listener(1_000);
    let before = worker_pids(&cluster);
    let http = Http::new();

    // Slowloris in the headers: a byte every 200 ms never finishes within the 1 s timeout.
    let mut slow = TcpStream::connect(&address).unwrap();
    slow.write_all(b"POST /token HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let mut cut = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        if slow.write_all(b"X").is_err() {
            cut = true;
            break;
        }
        let mut probe = [0u8; 512];
        slow.set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        if slow.read(&mut probe).is_ok() {
            cut = true; // an answer (408) or end of stream
            break;
        }
    }
    assert!(
        cut,
        "a slowloris connection was kept for {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // Slowloris in the body: complete headers, then a byte every 200 ms.
    let mut slow_body = TcpStream::connect(&address).unwrap();
    slow_body
        .write_all(b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n")
        .unwrap();
    let feeder = {
        let mut stream = slow_body.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..50 {
                std::thread::sleep(Duration::from_millis(200));
                if stream.write_all(b"a").is_err() {
                    break;
                }
            }
        })
    };
    let (answer, took) = read_all(&mut slow_body, Duration::from_secs(10));
    assert!(
        status_line(&answer).starts_with("HTTP/1.1 413"),
        "{}",
        status_line(&answer)
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(slow_body);
    feeder.join().unwrap();

    // Headers beyond 16 KiB: 431, not a buffer that grows.
    let mut big = TcpStream::connect(&address).unwrap();
    let request = format!(
        "GET /jwks HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let _ = big.write_all(request.as_bytes());
    let (answer, _) = read_all(&mut big, Duration::from_secs(5));
    assert!(
        status_line(&answer).starts_with("HTTP/1.1 431"),
        "{}",
        status_line(&answer)
    );

    // Bytes that are not UTF-8: in the request line (400), in a header (ignored: no client
    // authentication, 400/401), in a form body and in a JSON body (400).
    let raw = |bytes: &[u8]| {
        let mut s = TcpStream::connect(&address).unwrap();
        s.write_all(bytes).unwrap();
        status_line(&read_all(&mut s, Duration::from_secs(5)).0)
    };
    assert!(raw(b"GET /jw\xffks HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 4"));
    let header = raw(b"POST /token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic \xff\xfe\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 29\r\n\r\ngrant_type=client_credentials");
    assert!(
        header.starts_with("HTTP/1.1 400") || header.starts_with("HTTP/1.1 401"),
        "{header}"
    );
    for (content_type, body) in [
        (
            "application/x-www-form-urlencoded",
            &b"grant_type=\xff\xfe"[..],
        ),
        ("application/json", &b"{\"grant_type\": \"\xff\"}"[..]),
    ] {
        let mut request = format!(
            "POST /token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        assert!(raw(&request).starts_with("HTTP/1.1 400"), "{content_type}");
    }

    // Through all of it the workers never went down, and a client is served.
    assert_eq!(token(&http, &address, "good"), StatusCode::OK);
    assert_eq!(worker_pids(&cluster), before, "no worker restarted");
}

/// Raise this test's soft limit on open files (10,000 connections need as many).
fn raise_descriptor_limit() {
    #[repr(C)]
    struct Rlimit {
        cur: u64,
        max: u64,
    }
    extern "C" {
        fn getrlimit(resource: i32, rlim: *mut Rlimit) -> i32;
        fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
    }
    const RLIMIT_NOFILE: i32 = 7;
    let mut limit = Rlimit { cur: 0, max: 0 };
    // SAFETY: libc calls on a local struct of the kernel's layout (x86-64 Linux).
    unsafe {
        assert_eq!(getrlimit(RLIMIT_NOFILE, &mut limit), 0);
        assert!(
            limit.max >= 11_000,
            "the hard limit on open files is {}",
            limit.max
        );
        limit.cur = limit.max;
        assert_eq!(setrlimit(RLIMIT_NOFILE, &limit), 0);
    }
}

#[test]
fn ten_thousand_idle_connections_do_not_keep_a_client_out() {
    raise_descriptor_limit();
    let (cluster, address) = listener(30_000);
    let before = worker_pids(&cluster);
    let http = Http::new();
    // From 100 loopback addresses (127.0.0.2–101), 100 each: under the per-source limit, so
    // the workers hold every one of them, while the client below comes from 127.0.0.1.
    let target: std::net::SocketAddr = address.parse().unwrap();
    let idle: Vec<TcpStream> = (0..10_000)
        .map(|i| {
            let mut s = connect_from([127, 0, 0, 2 + (i % 100) as u8], target)
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            if i % 2 == 0 {
                s.write_all(b"POST /token HTTP/1.1\r\nHost: x\r\n").unwrap();
            }
            s
        })
        .collect();
    // The workers hold them all (none waits in the kernel's queue): each has its share.
    let started = Instant::now();
    assert_eq!(token(&http, &address, "good"), StatusCode::OK);
    let served_in = started.elapsed();
    let rss: Vec<String> = before
        .iter()
        .map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            status
                .lines()
                .find(|l| l.starts_with("VmRSS"))
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    println!("10,000 idle connections open: a token in {served_in:?}; worker memory {rss:?}");
    assert!(served_in < Duration::from_secs(10), "{served_in:?}");
    drop(idle);
    assert_eq!(worker_pids(&cluster), before);
}

#[test]
fn a_reload_applies_the_listener_limits_and_the_handlers_settings() {
    let (cluster, address) = listener(10_000);
    let before = worker_pids(&cluster);
    let http = Http::new();
    let body = format!("grant_type=client_credentials&pad={}", "x".repeat(4_000));
    let post = || {
        http.post(format!("http://{address}/token"))
            .basic_auth("good", Some(SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .unwrap()
            .status()
    };
    let issuer = || -> String {
        let metadata: Value = http
            .get(format!(
                "http://{address}/.well-known/oauth-authorization-server"
            ))
            .send()
            .unwrap()
            .json()
            .unwrap();
        metadata["issuer"].as_str().unwrap().to_owned()
    };
    assert_eq!(post(), StatusCode::OK);
    assert_eq!(issuer(), "https://before.example");
    let mut db = cluster.connect("postgres");
    for statement in [
        "ALTER SYSTEM SET pg_oauth.http_max_body = 2048",
        "ALTER SYSTEM SET pg_oauth.issuer = 'https://after.example'",
        "SELECT pg_reload_conf()",
    ] {
        db.batch_execute(statement).unwrap();
    }
    // Both workers have reloaded when every connection (new ones go to either) sees it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reloaded = (0..8).all(|_| post() == StatusCode::PAYLOAD_TOO_LARGE)
            && (0..8).all(|_| issuer() == "https://after.example");
        if reloaded {
            break;
        }
        assert!(Instant::now() < deadline, "the reload did not apply");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(worker_pids(&cluster), before, "applied without a restart");
}

/// SIGTERM (a server shutdown, or pg_terminate_backend) ends a worker gracefully: it accepts
/// nothing more, but a request it is receiving is read, answered, and only then is the
/// connection closed and the worker gone. Before, the worker exited at once and the client
/// got a closed connection.
#[test]
fn a_worker_told_to_stop_answers_the_request_it_is_receiving() {
    let (cluster, address) = listener(10_000);
    let before = worker_pids(&cluster);
    let body = "grant_type=client_credentials";
    let credentials = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("good:{SECRET}"))
    };
    let mut streams: Vec<TcpStream> = before
        .iter()
        .map(|_| {
            let mut s = TcpStream::connect(&address).unwrap();
            write!(
                s,
                "POST /token HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {credentials}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{}",
                body.len(),
                &body[..10]
            )
            .unwrap();
            s
        })
        .collect();
    // Half a body on a connection to each worker; then every worker is told to stop.
    std::thread::sleep(Duration::from_millis(300));
    let mut db = cluster.connect("postgres");
    for pid in &before {
        db.execute("SELECT pg_terminate_backend($1)", &[pid])
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    for stream in &mut streams {
        stream.write_all(&body.as_bytes()[10..]).unwrap();
        let (answer, _) = read_all(stream, Duration::from_secs(10));
        assert_eq!(
            status_line(&answer),
            "HTTP/1.1 200 OK",
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while !worker_pids(&cluster).is_empty() {
        assert!(Instant::now() < deadline, "the workers did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(cluster.log().contains("HTTP listener stopping"));
}

#[test]
fn the_workers_end_with_the_postmaster() {
    let (cluster, address) = listener(10_000);
    let workers = worker_pids(&cluster);
    assert_eq!(workers.len(), 2);
    // Keep a connection open, as a client would: the worker must not linger for it.
    let mut open = TcpStream::connect(&address).unwrap();
    open.write_all(b"GET /jwks HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let postmaster = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_owned();
    std::process::Command::new("kill")
        .args(["-9", &postmaster])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while workers
        .iter()
        .any(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "a worker outlived the postmaster"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The port is free: nothing answers on it any more, the open connection is closed.
    assert!(TcpStream::connect(&address).is_err());
    let (_, _) = read_all(&mut open, Duration::from_secs(5));
    assert!(
        open.write_all(b"GET /jwks HTTP/1.1\r\n\r\n").is_err() || {
            let mut byte = [0u8; 1];
            matches!(open.read(&mut byte), Ok(0) | Err(_))
        }
    );
}

#[test]
fn only_a_trusted_proxy_names_the_source() {
    let (cluster, address) = listener(10_000);
    let mut db = cluster.connect("postgres");
    let guess = |forwarded: &str| {
        let status = Http::new()
            .post(format!("http://{address}/token"))
            .basic_auth("good", Some("a wrong guess"))
            .header("x-forwarded-for", forwarded)
            .form(&[("grant_type", "client_credentials")])
            .send()
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    };
    let last_source = |db: &mut pg_oauth_harness::postgres::Client| -> String {
        db.query_one(
            "SELECT source FROM oauth.auth_failure ORDER BY at DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0)
    };
    // Not trusted (the default): the header is the caller's claim, the socket peer counts.
    guess("203.0.113.7");
    assert_eq!(last_source(&mut db), "127.0.0.1");
    // The proxy at 127.0.0.1 is trusted: the address it forwards counts.
    for statement in [
        "ALTER SYSTEM SET pg_oauth.http_client_address_header = 'x-forwarded-for'",
        "ALTER SYSTEM SET pg_oauth.http_trusted_proxies = '10.0.0.1, 127.0.0.1'",
        "SELECT pg_reload_conf()",
    ] {
        db.batch_execute(statement).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        guess("198.51.100.1, 203.0.113.9");
        if last_source(&mut db) == "203.0.113.9" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the trusted proxy was never believed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
