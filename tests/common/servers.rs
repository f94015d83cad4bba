//! Real Git servers for the remote tests, run as the test's own processes
//! (no system service): `git http-backend` behind nginx (through fcgiwrap)
//! over TLS with basic auth, and OpenSSH's sshd with a forced `git-shell`.
//! A test CA (rcgen) signs the web server's certificate. Every process is
//! killed when its guard drops.

use super::gitrepo::git;
use super::wait_for;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on `ip` (bound and released: the test's addresses are its own).
pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

fn await_listening(what: &str, ip: &str, port: u16) {
    wait_for(what, Duration::from_secs(10), || {
        TcpStream::connect((ip, port)).ok().map(drop)
    });
}

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate and key (PEM) for `names` (host names or IPs).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("server params");
        params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.cert_pem).expect("write CA");
        path.to_path_buf()
    }
}

/// Repositories under `root` served by `git http-backend` over https.
pub struct HttpsGit {
    /// `https://IP:PORT`; a repository is `{base}/origin.git`.
    pub base: String,
    dir: PathBuf,
    ip: String,
    port: u16,
    nginx: Option<Proc>,
    _fcgiwrap: Proc,
}

impl HttpsGit {
    /// Serves `root` on `ip` with the certificate and key given, to the
    /// basic-auth users given (`(user, password)`); pushes are allowed.
    pub fn start(
        dir: &Path,
        ip: &str,
        root: &Path,
        cert_key: (String, String),
        users: &[(&str, &str)],
    ) -> Self {
        std::fs::create_dir_all(dir.join("tmp")).expect("mkdir");
        std::fs::write(dir.join("server.pem"), cert_key.0).expect("cert");
        std::fs::write(dir.join("server.key"), cert_key.1).expect("key");
        let htpasswd: String = users
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}\n"))
            .collect();
        std::fs::write(dir.join("htpasswd"), htpasswd).expect("htpasswd");
        let sock = dir.join("fcgiwrap.sock");
        let fcgiwrap = Proc(
            Command::new("/usr/sbin/fcgiwrap")
                .arg("-s")
                .arg(format!("unix:{}", sock.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("fcgiwrap (scripts/install-deps.sh installs it)"),
        );
        wait_for("fcgiwrap socket", Duration::from_secs(10), || {
            sock.exists().then_some(())
        });
        let exec_path = git(dir, &["--exec-path"]);
        let port = free_port(ip);
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
events {{ worker_connections 64; }}
http {{
  access_log {d}/nginx-access.log;
  client_body_temp_path {d}/tmp/body;
  fastcgi_temp_path {d}/tmp/fastcgi;
  proxy_temp_path {d}/tmp/proxy;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  server {{
    listen {ip}:{port} ssl;
    ssl_certificate {d}/server.pem;
    ssl_certificate_key {d}/server.key;
    client_max_body_size 0;
    location / {{
      auth_basic "git";
      auth_basic_user_file {d}/htpasswd;
      fastcgi_pass unix:{sock};
      fastcgi_param SCRIPT_FILENAME {exec_path}/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT {root};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO $uri;
      fastcgi_param REMOTE_USER $remote_user;
      fastcgi_param QUERY_STRING $query_string;
      fastcgi_param REQUEST_METHOD $request_method;
      fastcgi_param CONTENT_TYPE $content_type;
      fastcgi_param CONTENT_LENGTH $content_length;
      fastcgi_param PATH /usr/local/bin:/usr/bin:/bin;
    }}
  }}
}}
"#,
            sock = sock.display(),
            root = root.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
        let mut s = Self {
            base: format!("https://{ip}:{port}"),
            dir: dir.to_path_buf(),
            ip: ip.to_string(),
            port,
            nginx: None,
            _fcgiwrap: fcgiwrap,
        };
        s.resume();
        s
    }

    /// Starts nginx (again, after [`HttpsGit::stop`]) on the same port.
    pub fn resume(&mut self) {
        let d = &self.dir;
        let child = Command::new("/usr/sbin/nginx")
            .arg("-e")
            .arg(d.join("nginx-error.log"))
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (scripts/install-deps.sh installs nginx-light)");
        self.nginx = Some(Proc(child));
        await_listening("nginx listening", &self.ip, self.port);
    }

    /// Stops the web server: the remote is down.
    pub fn stop(&mut self) {
        self.nginx = None;
    }
}

/// The user the tests run as (sshd lets only that user in).
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `ssh-keygen -t ed25519` into `path` (and `path.pub`); returns the public key line.
pub fn ssh_keygen(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "pgcd-test", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(path.with_extension("pub"))
        .expect("public key")
        .trim()
        .to_string()
}

/// The SHA256 fingerprint of a public key file, as `ssh-keygen -l` prints it.
pub fn ssh_fingerprint(pub_file: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pub_file)
        .output()
        .expect("ssh-keygen -l");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string()
}

/// OpenSSH's sshd on `ip` and a free port, as the test's user, with one
/// host key and deploy keys forced into `git-shell`.
pub struct SshGit {
    /// The address.
    pub ip: String,
    /// The port.
    pub port: u16,
    /// The host's public key line (`ssh-ed25519 AAAA... pgcd-test`).
    pub host_key: String,
    /// The host's public key file.
    pub host_key_file: PathBuf,
    _sshd: Proc,
}

impl SshGit {
    /// Starts sshd letting in the public keys given (lines of `.pub` files).
    pub fn start(dir: &Path, ip: &str, deploy_keys: &[&str]) -> Self {
        std::fs::create_dir_all(dir).expect("mkdir");
        let host = dir.join("host_ed25519");
        let host_key = ssh_keygen(&host);
        let git_shell = Path::new(&git(dir, &["--exec-path"])).join("git-shell");
        let keys: String = deploy_keys
            .iter()
            .map(|k| {
                format!(
                    "command=\"{} -c \\\"$SSH_ORIGINAL_COMMAND\\\"\",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty {k}\n",
                    git_shell.display()
                )
            })
            .collect();
        std::fs::write(dir.join("authorized_keys"), keys).expect("authorized_keys");
        let port = free_port(ip);
        let d = dir.display();
        let conf = format!(
            "Port {port}\nListenAddress {ip}\nHostKey {d}/host_ed25519\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nAllowUsers {user}\nLogLevel VERBOSE\n",
            user = current_user()
        );
        std::fs::write(dir.join("sshd_config"), conf).expect("sshd_config");
        // sshd run by root wants its privilege-separation directory.
        if unsafe { libc::geteuid() } == 0 {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let log = std::fs::File::create(dir.join("sshd.log")).expect("sshd log");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .args(["-D", "-e"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("sshd (scripts/install-deps.sh installs openssh-server)");
        let sshd = Proc(child);
        await_listening("sshd listening", ip, port);
        Self {
            ip: ip.to_string(),
            port,
            host_key,
            host_key_file: host.with_extension("pub"),
            _sshd: sshd,
        }
    }

    /// `ssh://USER@IP:PORT<path>`.
    pub fn url(&self, path: &Path) -> String {
        format!(
            "ssh://{}@{}:{}{}",
            current_user(),
            self.ip,
            self.port,
            path.display()
        )
    }

    /// A known_hosts line for this server with `key` (`type base64 ...`).
    pub fn known_hosts_line(&self, key: &str) -> String {
        let mut parts = key.split_whitespace();
        let (kind, b64) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        format!("[{}]:{} {kind} {b64}\n", self.ip, self.port)
    }
}
