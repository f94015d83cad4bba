//! pgEdge Control Plane fields pgcd does not carry out, and what pgcd offers
//! instead. A pgEdge user pastes specs from pgEdge's documentation; a field
//! pgcd would silently ignore is worse than a clear refusal, so each one is
//! an error at its key that says what to do (see [`MapReader::unsupported`]).
//!
//! [`MapReader::unsupported`]: super::decode::MapReader::unsupported

use super::yaml::{Node, Value};

/// Why `orchestrator_opts` is refused; names the image of a `swarm.image`
/// pin so it can move to `pgcd.yaml`.
pub fn orchestrator_opts(node: &Node) -> String {
    let mut msg = String::from(
        "`orchestrator_opts` is not supported: pgcd runs each instance as a Docker container \
         on the host's network itself, not through Docker Swarm",
    );
    let swarm = field(node, "swarm");
    if let Some(image) = swarm.and_then(|s| field(s, "image")).and_then(scalar) {
        // pgEdge tags start with the PostgreSQL version (`17.9-spock5.0.6-standard-2`).
        let tag = image.rsplit_once(':').map_or("", |(_, t)| t);
        let major: String = tag.chars().take_while(char::is_ascii_digit).collect();
        let major = if major.is_empty() {
            "17".to_string()
        } else {
            major
        };
        msg.push_str(&format!(
            "; to pin the image, remove this and put it under `images:` in pgcd.yaml, keyed by the PostgreSQL major (`\"{major}\": {image}`; one image per major, for every node of it)"
        ));
    } else {
        msg.push_str(
            "; an image pin goes under `images:` in pgcd.yaml, keyed by the PostgreSQL major",
        );
    }
    let others: Vec<&str> = ["extra_volumes", "extra_networks", "extra_labels"]
        .into_iter()
        .filter(|k| swarm.and_then(|s| field(s, k)).is_some())
        .collect();
    if !others.is_empty() {
        msg.push_str(&format!(
            "; {} have no pgcd equivalent (data lives under the agent's --data-dir; a posix repository's base_path is a path on the host)",
            others.join(", ")
        ));
    }
    msg
}

/// Why `patroni_port` is refused.
pub fn patroni_port(_: &Node) -> String {
    "`patroni_port` is not supported: pgcd runs no Patroni (its agents watch the instances \
     and the leader decides failover through etcd); remove it"
        .into()
}

/// Why `services` is refused.
pub fn services(_: &Node) -> String {
    "`services` (MCP, PostgREST, RAG servers) is not supported: pgcd runs PostgreSQL only; \
     run those services beside it (a container or systemd unit) connecting as one of \
     `database_users`, and remove this"
        .into()
}

fn field<'a>(node: &'a Node, name: &str) -> Option<&'a Node> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.text == name)
            .map(|(_, v)| v)
            .filter(|v| !v.is_null()),
        _ => None,
    }
}

fn scalar(node: &Node) -> Option<&str> {
    match &node.value {
        Value::Scalar { text, .. } => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse;

    #[test]
    fn an_image_pin_is_named_with_where_it_goes() {
        let doc =
            parse("swarm:\n  image: ghcr.io/pgedge/pgedge-postgres:17.9\n  extra_labels: {a: b}\n")
                .unwrap()
                .unwrap();
        let msg = orchestrator_opts(&doc);
        assert!(
            msg.contains("`\"17\": ghcr.io/pgedge/pgedge-postgres:17.9`"),
            "{msg}"
        );
        assert!(
            msg.contains("extra_labels have no pgcd equivalent"),
            "{msg}"
        );
    }
}
