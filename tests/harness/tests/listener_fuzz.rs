//! Grammar-based fuzzing of the listener over real sockets: requests built from HTTP's and
//! OAuth's grammar (methods, paths, versions, headers, Basic credentials, form and JSON
//! bodies, chunked bodies), then mutated at the byte level (flips, cuts, insertions). Every
//! answer must be an HTTP response with a status pg_oauth or hyper gives for bad input, or
//! the connection closed; never a 5xx (bad input must not look like our fault), never a
//! worker restart or a crash. PG_OAUTH_HTTP_FUZZ_REQUESTS requests (default 20,000;
//! `make fuzz` sends 1,000,000), from PG_OAUTH_FUZZ_SEED.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use pg_oauth_harness::{free_port, Cluster, Rng};

const SECRET: &str = "a-long-enough-secret-for-the-fuzzer";
const CLIENTS: [&str; 3] = ["fuzz-opaque", "fuzz-jwt", "fuzz-refresh"];

fn requests() -> usize {
    std::env::var("PG_OAUTH_HTTP_FUZZ_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn form_value(rng: &mut Rng, valid: &[&str]) -> String {
    match rng.below(4) {
        0 => rng.text(),
        1 => {
            let valid = rng_pick(rng, valid);
            rng.mutate(valid)
        }
        _ => rng_pick(rng, valid).to_owned(),
    }
}

fn rng_pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len())]
}

/// Percent-encode as a form does (or, one time in eight, not at all).
fn encode(rng: &mut Rng, value: &str) -> String {
    if rng.below(8) == 0 {
        return value.to_owned();
    }
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn body(rng: &mut Rng, tokens: &[String], json: bool) -> Vec<u8> {
    let token_refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let fields: Vec<(&str, String)> = (0..rng.below(7))
        .map(|_| {
            let name = rng_pick(
                rng,
                &[
                    "grant_type",
                    "client_id",
                    "client_secret",
                    "scope",
                    "audience",
                    "resource",
                    "refresh_token",
                    "token",
                    "token_type_hint",
                    "client_assertion_type",
                    "client_assertion",
                    "",
                    "x",
                ],
            );
            let value = match name {
                "grant_type" => form_value(
                    rng,
                    &[
                        "client_credentials",
                        "refresh_token",
                        "password",
                        "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    ],
                ),
                "client_id" => form_value(rng, &CLIENTS),
                "client_secret" => form_value(rng, &[SECRET, "wrong"]),
                "scope" => form_value(rng, &["read", "read write", "system/*.read", ""]),
                "token" | "refresh_token" | "client_assertion" => form_value(rng, &token_refs),
                "client_assertion_type" => form_value(
                    rng,
                    &["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
                ),
                _ => rng.text(),
            };
            (name, value)
        })
        .collect();
    if json {
        let object: serde_json::Map<String, serde_json::Value> = fields
            .into_iter()
            .map(|(k, v)| {
                let value = match rng.below(6) {
                    0 => serde_json::json!([v, 1, null]),
                    1 => serde_json::json!({ "nested": v }),
                    2 => serde_json::json!(rng.below(1_000_000)),
                    _ => serde_json::Value::String(v),
                };
                (k.to_owned(), value)
            })
            .collect();
        return match rng.below(10) {
            0 => b"[1, 2]".to_vec(),
            1 => b"{\"grant_type\": ".to_vec(),
            _ => serde_json::Value::Object(object).to_string().into_bytes(),
        };
    }
    let pairs: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(rng, k), encode(rng, v)))
        .collect();
    pairs.join("&").into_bytes()
}

fn authorization(rng: &mut Rng, tokens: &[String]) -> Option<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    Some(match rng.below(6) {
        0 => return None,
        1 => format!(
            "Basic {}",
            b64.encode(format!("{}:{SECRET}", rng_pick(rng, &CLIENTS)))
        ),
        2 => format!(
            "Basic {}",
            b64.encode(format!("{}:{}", rng.text(), rng.text()))
        ),
        3 => format!("Basic {}", rng.mutate(&b64.encode("fuzz-jwt:x"))),
        4 => format!("Bearer {}", tokens[rng.below(tokens.len())]),
        _ => rng.text(),
    })
}

/// One request, from the grammar, then perhaps mutated.
fn request(rng: &mut Rng, tokens: &[String]) -> Vec<u8> {
    let method = rng_pick(
        rng,
        &[
            "POST", "POST", "POST", "GET", "GET", "PUT", "HEAD", "OPTIONS", "DELETE", "BREW", "",
        ],
    );
    let mut path = rng_pick(
        rng,
        &[
            "/token",
            "/revoke",
            "/introspect",
            "/jwks",
            "/.well-known/oauth-authorization-server",
            "/.well-known/smart-configuration",
            "/metadata",
            "/",
            "*",
            "/token/../jwks",
            "http://x/token",
        ],
    )
    .to_owned();
    if rng.below(8) == 0 {
        path.push('?');
        let query = rng.text();
        path.push_str(&encode(rng, &query));
    }
    let version = rng_pick(
        rng,
        &["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1x"],
    );
    let json = rng.below(4) == 0;
    let content = body(rng, tokens, json);
    let mut head = format!("{method} {path} {version}\r\n");
    if rng.below(10) != 0 {
        head.push_str("Host: fuzz\r\n");
    }
    let content_type = match rng.below(8) {
        0 => "text/plain".to_owned(),
        1 => rng.text(),
        _ if json => "application/json".to_owned(),
        _ => "application/x-www-form-urlencoded".to_owned(),
    };
    head.push_str(&format!("Content-Type: {content_type}\r\n"));
    if let Some(auth) = authorization(rng, tokens) {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    for _ in 0..rng.below(3) {
        let name = rng_pick(
            rng,
            &["X-Forwarded-For", "Accept", "X-Fuzz", "Cookie", "Expect"],
        );
        head.push_str(&format!("{name}: {}\r\n", rng.text()));
    }
    let chunked = rng.below(8) == 0;
    match rng.below(12) {
        0 => {}
        1 => head.push_str(&format!("Content-Length: {}\r\n", content.len() + 10)),
        2 => head.push_str("Content-Length: -1\r\n"),
        3 => head.push_str(&format!(
            "Content-Length: {}\r\nContent-Length: 0\r\n",
            content.len()
        )),
        _ if chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
        _ => head.push_str(&format!("Content-Length: {}\r\n", content.len())),
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    if chunked {
        for piece in content.chunks(1 + rng.below(64)) {
            bytes.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            bytes.extend_from_slice(piece);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
    } else {
        bytes.extend_from_slice(&content);
    }
    // Byte-level mutations: flip, insert or cut.
    if rng.below(3) == 0 {
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len().max(1));
            match rng.below(4) {
                0 if !bytes.is_empty() => bytes[at] ^= 1 << rng.below(8),
                1 => bytes.insert(at.min(bytes.len()), rng.below(256) as u8),
                2 => bytes.truncate(at),
                _ if !bytes.is_empty() => bytes[at] = *rng_pick_byte(rng),
                _ => {}
            }
        }
    }
    bytes
}

fn rng_pick_byte(rng: &mut Rng) -> &'static u8 {
    const BYTES: &[u8] = b"\x00\r\n :%&=+\xff\xc3\x80";
    &BYTES[rng.below(BYTES.len())]
}

/// Send `bytes`, half-close, read the answer: its status, or None for a closed connection.
fn exchange(address: &str, bytes: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(address).expect("the listener accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The server may answer and close before reading everything: a failed write is fine.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    if answer.is_empty() {
        return None;
    }
    let line = String::from_utf8_lossy(&answer[..answer.len().min(64)]).into_owned();
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    Some(status.unwrap_or_else(|| panic!("not an HTTP response: {line:?}")))
}

fn worker_pids(db: &mut pg_oauth_harness::postgres::Client) -> Vec<i32> {
    db.query(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_oauth http listener' ORDER BY pid",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn fuzzed_http_gets_client_errors_and_crashes_nothing() {
    let seed: u64 = std::env::var("PG_OAUTH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("PG_OAUTH_FUZZ_SEED={seed}");
    let port = free_port();
    let listen = format!("'127.0.0.1:{port}'");
    let cluster = Cluster::start(
        "listener-fuzz",
        &[
            ("shared_preload_libraries", "'pg_oauth'"),
            ("pg_oauth.http_listen", &listen),
            ("pg_oauth.http_workers", "2"),
            ("pg_oauth.http_timeout", "2000"),
            ("pg_oauth.issuer", "'https://fuzz.example'"),
        ],
    );
    let mut db = cluster.connect("postgres");
    db.batch_execute(&format!(
        "CREATE EXTENSION pg_oauth;
         INSERT INTO oauth.client (id, secret, scope, token_format, refresh_token)
         VALUES ('fuzz-opaque', '{SECRET}', '{{read,write}}', 'opaque', false),
                ('fuzz-jwt', '{SECRET}', '{{read}}', 'jwt', false),
                ('fuzz-refresh', '{SECRET}', '{{read}}', 'opaque', true);"
    ))
    .unwrap();
    // Real tokens to mutate: an opaque one, a JWT, a refresh token.
    let mut tokens = Vec::new();
    for client in CLIENTS {
        let issued: serde_json::Value = db
            .query_one(
                "SELECT oauth.auth_token('client_credentials', $1, $2)",
                &[&client, &SECRET],
            )
            .unwrap()
            .get(0);
        tokens.push(issued["access_token"].as_str().unwrap().to_owned());
        if let Some(rt) = issued["refresh_token"].as_str() {
            tokens.push(rt.to_owned());
        }
    }
    let workers = worker_pids(&mut db);
    assert_eq!(workers.len(), 2);

    let total = requests();
    let threads = 8;
    let address = format!("127.0.0.1:{port}");
    let closed = Arc::new(AtomicUsize::new(0));
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (address, tokens, closed, statuses) = (
                address.clone(),
                tokens.clone(),
                closed.clone(),
                statuses.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed.wrapping_add(t as u64 * 0x9E37_79B9));
                let mut seen = std::collections::BTreeMap::<u16, usize>::new();
                for i in 0..total / threads + usize::from(t < total % threads) {
                    let bytes = request(&mut rng, &tokens);
                    match exchange(&address, &bytes) {
                        None => {
                            closed.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(status) => {
                            assert!(
                                (200..500).contains(&status),
                                "status {status} for request {i} of thread {t} (seed {seed}): {:?}",
                                String::from_utf8_lossy(&bytes)
                            );
                            *seen.entry(status).or_default() += 1;
                        }
                    }
                }
                let mut all = statuses.lock().unwrap();
                for (status, n) in seen {
                    *all.entry(status).or_insert(0) += n;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    println!(
        "{total} fuzzed requests in {:?}: statuses {:?}, {} closed without an answer",
        started.elapsed(),
        statuses.lock().unwrap(),
        closed.load(Ordering::Relaxed)
    );

    // Nothing crashed: the same workers, a clean log, and a real client is served.
    let after = worker_pids(&mut db);
    assert_eq!(after, workers, "a worker restarted (seed {seed})");
    let log = cluster.log();
    for bad in [
        "terminated by signal",
        "PANIC",
        "exited with exit code",
        "request to",
    ] {
        assert!(!log.contains(bad), "{bad} in the server log (seed {seed})");
    }
    let token = reqwest::blocking::Client::new()
        .post(format!("http://{address}/token"))
        .basic_auth("fuzz-opaque", Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap();
    assert_eq!(token.status(), reqwest::StatusCode::OK);
}
