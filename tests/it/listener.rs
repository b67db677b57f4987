//! Slow and greedy clients against a real daemon's listener over real sockets: half-sent
//! or trickling headers and idle keep-alive connections are closed after the header
//! timeout, a trickling body is cut off, the server at its connection limit stays healthy
//! and recovers, one client address cannot take every connection, and SIGTERM still
//! stops the daemon while slow clients hold connections.

use crate::public::{connect_from, read_answer, request_from, Daemon};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const HALF_HEADER: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow";

/// Whether the daemon closed the connection: end of stream or reset (a 408 it may
/// write first is read past). Waits at most the stream's read timeout.
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Whether the connection is still open right now (nothing to read, not closed).
fn open_now(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let open = matches!(s.peek(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    open
}

#[test]
fn half_sent_headers_are_closed_after_the_header_timeout() {
    let mut daemon = Daemon::start("header_timeout_seconds = 1\nmax_connections_per_client = 0");
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = connect_from("127.0.0.2", daemon.port);
            s.write_all(HALF_HEADER).unwrap();
            s
        })
        .collect();
    for (i, s) in slow.iter_mut().enumerate() {
        assert!(closed(s), "connection {i} is still open");
    }
    assert_eq!(request_from("127.0.0.1", daemon.port, "GET", "/healthz", &[], "").body, "ok\n", "healthz answers once the slow clients are shed");
    daemon.stop();
}

#[test]
fn a_header_that_trickles_is_closed_all_the_same() {
    let mut daemon = Daemon::start("header_timeout_seconds = 1");
    let mut s = connect_from("127.0.0.2", daemon.port);
    let mut writer = s.try_clone().unwrap();
    // a header byte every 100 ms, for up to 30 s: the clock is not reset by progress
    let trickle = std::thread::spawn(move || {
        let mut sent = 0;
        while sent < 300 && writer.write_all(if sent == 0 { b"G" } else { b"x" }).is_ok() {
            sent += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        sent
    });
    assert!(closed(&mut s), "the connection is still open");
    assert!(trickle.join().unwrap() < 300, "closed before the client gave up");
    daemon.stop();
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let mut daemon = Daemon::start("header_timeout_seconds = 1");
    let mut s = connect_from("127.0.0.2", daemon.port);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"ok\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the connection closed before the answer");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    assert!(closed(&mut s), "the kept-alive connection idles past the timeout and is closed");
    daemon.stop();
}

#[test]
fn a_trickling_body_is_cut_off() {
    let mut daemon = Daemon::start("body_timeout_seconds = 1\nmax_body_bytes = 1000");
    let token = daemon.links().token("m0000001", "email");
    let mut s = connect_from("127.0.0.2", daemon.port);
    s.write_all(format!("POST /u/{token} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 600\r\n\r\n").as_bytes()).unwrap();
    let mut writer = s.try_clone().unwrap();
    // one byte every 50 ms: the whole body would take 30 s
    let trickle = std::thread::spawn(move || {
        let mut sent = 0;
        while sent < 600 && writer.write_all(b"x").is_ok() {
            sent += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        sent
    });
    let answer = read_answer(&mut s);
    assert_eq!(answer.status, 408, "{}", answer.body);
    let sent = trickle.join().unwrap();
    assert!(sent < 600, "the body was cut off before it was complete ({sent} bytes)");
    let big = "x".repeat(1001);
    assert_eq!(request_from("127.0.0.1", daemon.port, "POST", "/callbacks/email", &[], &big).status, 413, "over max_body_bytes");
    assert_eq!(request_from("127.0.0.1", daemon.port, "GET", "/healthz", &[], "").body, "ok\n");
    daemon.stop();
    assert!(daemon.unsubscribes().is_empty(), "the cut-off request never reached its handler");
}

#[test]
fn at_the_connection_limit_the_server_stays_healthy_and_recovers() {
    let mut daemon = Daemon::start("header_timeout_seconds = 2\nmax_connections = 8\nmax_connections_per_client = 0");
    let mut idle: Vec<TcpStream> = (0..8).map(|_| connect_from("127.0.0.2", daemon.port)).collect();
    // the ninth waits in the backlog until the silent ones are shed, then is answered
    let health = request_from("127.0.0.1", daemon.port, "GET", "/healthz", &[], "");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(closed(s), "silent connection {i} is still open");
    }
    for _ in 0..20 {
        assert_eq!(request_from("127.0.0.1", daemon.port, "GET", "/healthz", &[], "").status, 200);
    }
    daemon.stop();
}

#[test]
fn one_client_cannot_take_every_connection() {
    let mut daemon = Daemon::start("header_timeout_seconds = 60\nmax_connections = 16\nmax_connections_per_client = 4");
    let greedy: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = connect_from("127.0.0.2", daemon.port);
            let _ = s.write_all(HALF_HEADER);
            s
        })
        .collect();
    // answered at once while the greedy client holds all it may
    assert_eq!(request_from("127.0.0.1", daemon.port, "GET", "/healthz", &[], "").body, "ok\n");
    let held = greedy.iter().filter(|s| open_now(s)).count();
    assert_eq!(held, 4, "the client keeps max_connections_per_client connections, the rest are closed");
    // the daemon stops on SIGTERM although slow clients hold connections
    let status = daemon.stop();
    assert!(status.success(), "{status}: {}", daemon.log());
}
