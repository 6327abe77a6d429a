//! Who a listener request comes from, on a dual-stack socket (`[::]:port`): an IPv4 proxy is
//! seen as `::ffff:127.0.0.1` by the socket and must still match its `127.0.0.1` entry in
//! pg_oauth.http_trusted_proxies (networks in CIDR form too); and one address may not take
//! every connection (pg_oauth.http_max_connections_per_source), while others are served.

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use pg_oauth_harness::{free_port, postgres, Cluster};
use reqwest::blocking::Client as Http;

const SECRET: &str = "a-long-enough-secret-for-the-listener-0123";

fn dual_stack(name: &str, extra: &[(&str, &str)]) -> (Cluster, u16) {
    let port = free_port();
    let listen = format!("'[::]:{port}'");
    let mut settings = vec![
        ("shared_preload_libraries", "'pg_oauth'"),
        ("pg_oauth.http_listen", listen.as_str()),
        ("pg_oauth.http_workers", "1"),
    ];
    settings.extend_from_slice(extra);
    let cluster = Cluster::start(name, &settings);
    cluster.wait_for_listener(&format!("127.0.0.1:{port}"));
    let mut db = cluster.connect("postgres");
    db.batch_execute("CREATE EXTENSION pg_oauth").unwrap();
    db.execute(
        "INSERT INTO oauth.client (id, secret, scope) VALUES ('c', $1, '{read}')",
        &[&SECRET],
    )
    .unwrap();
    (cluster, port)
}

fn last_source(db: &mut postgres::Client) -> String {
    db.query_one(
        "SELECT source FROM oauth.auth_failure ORDER BY id DESC LIMIT 1",
        &[],
    )
    .unwrap()
    .get(0)
}

fn guess(http: &Http, url: &str, forwarded: &str) -> u16 {
    http.post(url)
        .basic_auth("c", Some("wrong"))
        .header("x-forwarded-for", forwarded)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn an_ipv4_proxy_on_a_dual_stack_listener_is_trusted_by_its_ipv4_entry() {
    let (cluster, port) = dual_stack(
        "listener-dual-stack",
        &[
            ("pg_oauth.http_trusted_proxies", "'127.0.0.1, fd00::/8'"),
            ("pg_oauth.http_client_address_header", "'x-forwarded-for'"),
        ],
    );
    let mut db = cluster.connect("postgres");
    let http = Http::new();
    // Over IPv4 to [::]: the socket says ::ffff:127.0.0.1, the trusted entry 127.0.0.1.
    assert_eq!(
        guess(
            &http,
            &format!("http://127.0.0.1:{port}/token"),
            "198.51.100.7"
        ),
        401
    );
    assert_eq!(last_source(&mut db), "198.51.100.7");
    // Over IPv6 loopback, not trusted: the header does not count, and the peer is ::1.
    assert_eq!(
        guess(&http, &format!("http://[::1]:{port}/token"), "198.51.100.8"),
        401
    );
    assert_eq!(last_source(&mut db), "::1");
}

#[test]
fn one_address_cannot_take_every_connection() {
    let (cluster, port) = dual_stack(
        "listener-per-source",
        &[("pg_oauth.http_max_connections_per_source", "20")],
    );
    let _db = cluster.connect("postgres");
    // 30 idle connections from 127.0.0.1: the server keeps 20 and closes the others at once.
    let conns: Vec<TcpStream> = (0..30)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let closed = conns
        .iter()
        .filter(|c| {
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut byte = [0u8; 1];
            let mut stream: &TcpStream = c;
            matches!(stream.read(&mut byte), Ok(0))
        })
        .count();
    assert_eq!(closed, 10, "connections beyond the per-source limit");
    // Another address is served meanwhile.
    let status = Http::new()
        .post(format!("http://[::1]:{port}/token"))
        .basic_auth("c", Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 200);
    drop(conns);
    std::thread::sleep(Duration::from_millis(300));
    let status = Http::new()
        .post(format!("http://127.0.0.1:{port}/token"))
        .basic_auth("c", Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap()
        .status();
    assert_eq!(
        status.as_u16(),
        200,
        "served again once its connections closed"
    );
}
