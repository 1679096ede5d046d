//! A TCP proxy between one `drover run` and the API server that a test can
//! freeze: while frozen, no byte moves either way on any connection, open
//! or new, as when a replica's network is cut off (the connections stay
//! open, so requests hang rather than fail). Thawed, everything held is
//! delivered, late, as a healed network delivers it. It forwards bytes
//! without looking at them, so it works for TLS (the real bed) and plain
//! HTTP (kubesim) alike.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Cutoff {
    pub addr: SocketAddr,
    frozen: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Copy `from` to `to`, holding every byte while frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Read just as the freeze began: held until the thaw too.
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Cutoff {
    /// A proxy on a free loopback port, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Cutoff {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let (frozen, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    // A connection opened while frozen is not even connected upstream.
                    if rx.wait_for(|f| !*f).await.is_err() {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, rx.clone()), pump(sr, cw, rx));
                });
            }
        });
        Cutoff { addr, frozen, task }
    }

    /// Cut the replica off: nothing moves until [`Cutoff::thaw`].
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// A copy of `kubeconfig` whose server is this proxy (same scheme, so
    /// TLS is verified against the real server's certificate, which names
    /// 127.0.0.1), and the upstream address it named.
    pub fn kubeconfig_via(kubeconfig: &Path, out: &Path, proxy: SocketAddr) -> PathBuf {
        let text = std::fs::read_to_string(kubeconfig).expect("read the kubeconfig");
        let upstream = Self::server_of(kubeconfig);
        let rewritten = text.replace(&upstream.to_string(), &proxy.to_string());
        assert_ne!(rewritten, text, "the kubeconfig names its server as {upstream}");
        std::fs::write(out, rewritten).unwrap();
        out.to_path_buf()
    }

    /// The `host:port` of a kubeconfig's (only) server.
    pub fn server_of(kubeconfig: &Path) -> SocketAddr {
        let text = std::fs::read_to_string(kubeconfig).expect("read the kubeconfig");
        let server = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server:"))
            .expect("a server in the kubeconfig")
            .trim()
            .trim_matches('"');
        let hostport = server.split("://").nth(1).unwrap_or(server).trim_end_matches('/');
        let hostport = hostport.replace("localhost", "127.0.0.1");
        hostport
            .parse()
            .unwrap_or_else(|e| panic!("the kubeconfig's server {server} is not host:port ({e})"))
    }
}

impl Drop for Cutoff {
    fn drop(&mut self) {
        self.task.abort();
    }
}
