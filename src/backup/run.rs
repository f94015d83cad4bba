//! Running pgBackRest: inside an instance's container (`docker exec` as
//! `postgres`, argv not a shell string), or for a restore in a one-off
//! container of the instance's image on its data directory, while the
//! instance's own container is stopped. Output reaches the caller line by
//! line (the task log), and the last lines go into the error.

use super::BackupError;
use crate::runtime::docker::Runtime;
use crate::state::InstanceId;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, LogsOptions, RemoveContainerOptions,
    StartContainerOptions,
};
use futures::StreamExt;
use std::time::Duration;

/// How many of the last output lines an error carries.
const TAIL: usize = 15;

/// Splits a stream of chunks into lines, handing each to `log` and keeping
/// the last ones for an error.
struct Lines<'a> {
    partial: String,
    tail: std::collections::VecDeque<String>,
    log: &'a (dyn Fn(&str) + Send + Sync),
}

impl<'a> Lines<'a> {
    fn new(log: &'a (dyn Fn(&str) + Send + Sync)) -> Self {
        Self {
            partial: String::new(),
            tail: Default::default(),
            log,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.partial.push_str(&String::from_utf8_lossy(chunk));
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.line(line.trim_end());
        }
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            return;
        }
        (self.log)(line);
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
    }

    fn finish(mut self) -> String {
        let rest = std::mem::take(&mut self.partial);
        self.line(rest.trim_end());
        self.tail.into_iter().collect::<Vec<_>>().join("\n")
    }
}

/// Runs `argv` in the instance's container as `postgres`; fails on a
/// non-zero exit with the command's last lines. Returns all of stdout and
/// stderr (for `info`, whose JSON is the output).
pub async fn exec(
    rt: &Runtime,
    id: &InstanceId,
    argv: &[String],
    timeout: Duration,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<String, BackupError> {
    let docker = rt.docker();
    let command = argv.join(" ");
    let exec = docker
        .create_exec(
            &id.container(),
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(argv.to_vec()),
                user: Some("postgres".into()),
                ..Default::default()
            },
        )
        .await?;
    let mut all = String::new();
    let mut lines = Lines::new(log);
    let collect = async {
        if let StartExecResults::Attached { mut output, .. } =
            docker.start_exec(&exec.id, None).await?
        {
            while let Some(chunk) = output.next().await {
                let bytes = chunk?.into_bytes();
                all.push_str(&String::from_utf8_lossy(&bytes));
                lines.push(&bytes);
            }
        }
        Ok::<(), bollard::errors::Error>(())
    };
    match tokio::time::timeout(timeout, collect).await {
        Ok(r) => r?,
        Err(_) => return Err(BackupError::Timeout(command, timeout.as_secs())),
    }
    let output = lines.finish();
    let code = docker.inspect_exec(&exec.id).await?.exit_code.unwrap_or(-1);
    if code != 0 {
        return Err(BackupError::Command {
            command,
            code,
            output,
        });
    }
    Ok(all)
}

/// Like [`exec`], with the output only in the error (quiet commands such
/// as `info`).
pub async fn exec_quiet(
    rt: &Runtime,
    id: &InstanceId,
    argv: &[String],
    timeout: Duration,
) -> Result<String, BackupError> {
    exec(rt, id, argv, timeout, &|_| {}).await
}

/// The one-off container of a restore.
pub fn restore_container(id: &InstanceId) -> String {
    format!("pgcd-restore-{}-{}-{}", id.database, id.node, id.host)
}

/// Runs `argv` as `postgres` in a one-off container of `image` with the
/// instance directory and `mounts` (the instance container's), on the
/// host's network (object stores on loopback), and removes it afterwards.
/// The container is not labelled as pgcd's, so the observer ignores it.
pub async fn one_off(
    rt: &Runtime,
    id: &InstanceId,
    image: &str,
    mounts: &[String],
    argv: &[String],
    timeout: Duration,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), BackupError> {
    one_off_as(rt, id, image, mounts, argv, "postgres", timeout, log).await
}

/// [`one_off`] as another user of the image (`root`, to make directories
/// before becoming `postgres`).
#[allow(clippy::too_many_arguments)] // one container's whole description
pub async fn one_off_as(
    rt: &Runtime,
    id: &InstanceId,
    image: &str,
    mounts: &[String],
    argv: &[String],
    user: &str,
    timeout: Duration,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), BackupError> {
    one_off_in(rt, id, image, mounts, argv, user, timeout, log, false).await
}

/// [`one_off_as`], in the PID namespace of the instance's own container
/// when `beside_instance`: its processes see the instance's server, so a
/// `postmaster.pid` of a server that runs is not taken for a stale one (a
/// server started there on the same data directory is refused, as on one
/// host).
#[allow(clippy::too_many_arguments)] // one container's whole description
pub async fn one_off_in(
    rt: &Runtime,
    id: &InstanceId,
    image: &str,
    mounts: &[String],
    argv: &[String],
    user: &str,
    timeout: Duration,
    log: &(dyn Fn(&str) + Send + Sync),
    beside_instance: bool,
) -> Result<(), BackupError> {
    let docker = rt.docker();
    let name = restore_container(id);
    let remove = || async {
        let r = docker
            .remove_container(
                &name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        match r {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(BackupError::Docker(e)),
        }
    };
    remove().await?; // a leftover of an interrupted attempt
    let binds: Vec<String> =
        std::iter::once(format!("{}:/var/lib/pgcd", rt.instance_dir(id).display()))
            .chain(mounts.iter().cloned())
            .collect();
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(argv.to_vec()),
        user: Some(user.into()),
        labels: Some(std::collections::HashMap::from([(
            "io.pgcd.restore-of".to_string(),
            id.container(),
        )])),
        host_config: Some(HostConfig {
            network_mode: Some("host".into()),
            binds: Some(binds),
            pid_mode: beside_instance.then(|| format!("container:{}", id.container())),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await?;
    docker
        .start_container(&name, None::<StartContainerOptions>)
        .await?;
    let mut lines = Lines::new(log);
    let follow = async {
        let mut stream = docker.logs(
            &name,
            Some(LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        while let Some(chunk) = stream.next().await {
            lines.push(&chunk?.into_bytes());
        }
        Ok::<(), bollard::errors::Error>(())
    };
    let followed = tokio::time::timeout(timeout, follow).await;
    let output = lines.finish();
    let command = argv.join(" ");
    let result = match followed {
        Err(_) => Err(BackupError::Timeout(command, timeout.as_secs())),
        Ok(Err(e)) => Err(BackupError::Docker(e)),
        Ok(Ok(())) => {
            let state = docker
                .inspect_container(&name, None::<InspectContainerOptions>)
                .await?
                .state
                .unwrap_or_default();
            match state.exit_code {
                Some(0) => Ok(()),
                code => Err(BackupError::Command {
                    command,
                    code: code.unwrap_or(-1),
                    output,
                }),
            }
        }
    };
    remove().await?;
    result
}
