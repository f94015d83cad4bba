//! The host's PostgreSQL certificate in its instances: copied into each
//! instance's directory when it is made, installed for `postgres` at each
//! start, and on rotation copied again and reloaded (SIGHUP), no restart.

use super::docker::{io, Runtime, RuntimeError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Puts the host's PostgreSQL certificate where the server reads it, owned
/// by `postgres` (the server refuses a key others can read). Run as root in
/// the container at each start and, on rotation, before a SIGHUP.
pub(super) const TLS_SCRIPT: &str = r##"set -eu
mkdir -p /var/lib/pgcd/tls-live
install -o postgres -g postgres -m 600 /var/lib/pgcd/tls/server.key /var/lib/pgcd/tls-live/server.key
install -o postgres -g postgres -m 644 /var/lib/pgcd/tls/server.crt /var/lib/pgcd/tls-live/server.crt
install -o postgres -g postgres -m 644 /var/lib/pgcd/tls/ca.crt /var/lib/pgcd/tls-live/ca.crt
"##;

impl Runtime {
    /// Copies the host's PostgreSQL certificate, key (0600) and the cluster
    /// CA into an instance's directory (`tls/`, mounted in its container).
    // Three small PEM files, once per container made.
    #[allow(clippy::disallowed_methods)]
    pub(super) fn install_tls(&self, dir: &Path) -> Result<(), RuntimeError> {
        use crate::pki::{files, CertKind};
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls).map_err(io(&tls))?;
        let copy = |from: PathBuf, to: &str, private: bool| -> Result<(), RuntimeError> {
            let text = files::read(&from).map_err(|e| RuntimeError::NotReady(e.to_string()))?;
            let to = tls.join(to);
            if private {
                files::write_private(&to, text.as_bytes())
            } else {
                files::write_public(&to, &text)
            }
            .map_err(|e| RuntimeError::NotReady(e.to_string()))
        };
        copy(self.pki.key(CertKind::Postgres), "server.key", true)?;
        copy(self.pki.cert(CertKind::Postgres), "server.crt", false)?;
        copy(self.pki.ca_cert(), "ca.crt", false)
    }

    /// Puts a renewed PostgreSQL certificate in force in every running
    /// instance of this host: copy, then SIGHUP (PostgreSQL re-reads its
    /// certificate files on reload; open connections keep theirs).
    pub async fn reload_tls(&self) -> Result<usize, RuntimeError> {
        let mut done = 0;
        for c in self.list().await? {
            if !c.running {
                continue;
            }
            let id = c.id;
            self.install_tls(&self.instance_dir(&id))?;
            let script = format!("{TLS_SCRIPT}\nkill -HUP 1");
            let (code, out) = self
                .exec_as(&id, "root", &script, Vec::new(), Duration::from_secs(20))
                .await?;
            if code != 0 {
                return Err(RuntimeError::NotReady(format!(
                    "reloading the certificate of {}: {out}",
                    id.container()
                )));
            }
            done += 1;
        }
        Ok(done)
    }
}
