//! `GET /`: the status page, server-rendered HTML that refreshes itself every
//! five seconds. No JavaScript and no build step: reading etcd
//! (`gather`) is apart from rendering (`render`, a pure function), and every
//! piece of text goes through `escape`. What cannot be read is named on the
//! page instead of failing it.

use super::databases;
use crate::api::ApiState;
use crate::cluster::election::current_leader;
use crate::cluster::keys;
use crate::cluster::now_rfc3339;
use crate::cluster::registry::{list_hosts, HostView};
use crate::cluster::tasks::{list_tasks, TaskStatus};
use crate::reconcile::status::{ConditionType, DatabaseStatus};
use crate::source::records::RevisionRecord;
use axum::extract::State;
use axum::response::Html;
use std::fmt::Write as _;

/// How many revisions the page lists.
const REVISIONS_SHOWN: usize = 10;
/// How many tasks the page lists.
const TASKS_SHOWN: usize = 20;

const CSS: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .4em}\
h3{font-size:1em;margin:1em 0 .3em}\
table{border-collapse:collapse;background:#fff;margin-bottom:.5em}\
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f0f0f0}pre{background:#fff;border:1px solid #ddd;padding:.6em;overflow:auto}\
.muted{color:#777}.bad{color:#b00020;font-weight:600}.ok{color:#1b7f3b}\
.badge{display:inline-block;border-radius:.8em;padding:0 .6em;color:#fff;font-size:.85em;margin-right:.3em}\
.Ready{background:#1b7f3b}.Reconciling{background:#1f5fbf}.Stalled{background:#b00020}\
.Degraded{background:#c76b00}.Orphaned{background:#6b4fa0}.NotReady{background:#888}.Suspended{background:#555}\
.problem{background:#fff3f3;border:1px solid #e0b4b4;padding:.4em .6em}";

/// Everything the page shows, read from etcd.
#[derive(Debug, Default)]
pub struct PageData {
    /// The pgcd cluster id.
    pub cluster_id: String,
    /// The host whose agent rendered the page.
    pub answered_by: String,
    /// The leader's host id, if there is one.
    pub leader: Option<String>,
    /// Every known host.
    pub hosts: Vec<HostView>,
    /// Every database's status, sorted by name.
    pub databases: Vec<DatabaseStatus>,
    /// Recent revisions, newest first.
    pub revisions: Vec<RevisionRecord>,
    /// Recent tasks, newest first.
    pub tasks: Vec<TaskStatus>,
    /// What could not be read, in words.
    pub problems: Vec<String>,
    /// When the page was rendered (RFC 3339).
    pub generated_at: String,
}

/// Renders the status page.
pub async fn get(State(state): State<ApiState>) -> Html<String> {
    Html(render(&gather(&state).await))
}

/// Reads what the page shows; each part that fails becomes a problem line.
pub async fn gather(state: &ApiState) -> PageData {
    let store = &state.store;
    let mut problems = Vec::new();
    let mut note = |what: &str, e: &dyn std::fmt::Display| {
        problems.push(format!("cannot read {what}: {e}"));
    };
    let leader = current_leader(store).await.unwrap_or_else(|e| {
        note("the leader", &e);
        None
    });
    let hosts = list_hosts(store).await.unwrap_or_else(|e| {
        note("hosts", &e);
        Vec::new()
    });
    let databases = databases::all(store).await.unwrap_or_else(|e| {
        note("database statuses", &e);
        Vec::new()
    });
    let mut revisions: Vec<RevisionRecord> = match store.get_prefix(keys::REVISIONS).await {
        Ok((entries, _)) => entries.iter().filter_map(|e| e.json().ok()).collect(),
        Err(e) => {
            note("revisions", &e);
            Vec::new()
        }
    };
    revisions.sort_by(|a, b| b.fetched_at.cmp(&a.fetched_at));
    revisions.truncate(REVISIONS_SHOWN);
    let mut tasks = list_tasks(store).await.unwrap_or_else(|e| {
        note("tasks", &e);
        Vec::new()
    });
    tasks.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    tasks.truncate(TASKS_SHOWN);
    PageData {
        cluster_id: state.cluster_id.clone(),
        answered_by: state.host.to_string(),
        leader,
        hosts,
        databases,
        revisions,
        tasks,
        problems,
        generated_at: now_rfc3339(),
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The first 12 characters of a commit id, escaped; `-` for none.
fn short(sha: Option<&str>) -> String {
    sha.map_or_else(
        || "-".to_owned(),
        |s| escape(&s.chars().take(12).collect::<String>()),
    )
}

/// Renders the page from what was read.
pub fn render(data: &PageData) -> String {
    let mut o = String::new();
    let e = escape;
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <title>pgcd {}</title><style>{CSS}</style></head><body>\n",
        e(&data.cluster_id)
    );
    let leader = data.leader.as_deref().map_or_else(
        || "<span class=\"bad\">none</span>".to_owned(),
        |l| format!("<b>{}</b>", e(l)),
    );
    let _ = writeln!(
        o,
        "<h1>pgcd cluster {}</h1><p>leader {leader} · answered by {} at {}</p>",
        e(&data.cluster_id),
        e(&data.answered_by),
        e(&data.generated_at)
    );
    for p in &data.problems {
        let _ = writeln!(o, "<p class=\"problem\">{}</p>", e(p));
    }
    render_hosts(&mut o, data);
    render_databases(&mut o, &data.databases);
    render_revisions(&mut o, &data.revisions);
    render_tasks(&mut o, &data.tasks);
    o.push_str("</body></html>\n");
    o
}

fn render_hosts(o: &mut String, data: &PageData) {
    let e = escape;
    let _ = writeln!(o, "<h2>Hosts</h2>");
    if data.hosts.is_empty() {
        let _ = writeln!(o, "<p class=\"muted\">No hosts.</p>");
        return;
    }
    let _ = writeln!(
        o,
        "<table><tr><th>host</th><th>address</th><th>health</th><th>version</th><th>labels</th></tr>"
    );
    for h in &data.hosts {
        let id = h.id.to_string();
        let leader = if data.leader.as_deref() == Some(id.as_str()) {
            " <span class=\"muted\">(leader)</span>"
        } else {
            ""
        };
        let health = if h.healthy {
            "<span class=\"ok\">healthy</span>"
        } else {
            "<span class=\"bad\">down</span>"
        };
        let labels: Vec<String> = h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            o,
            "<tr><td>{}{leader}</td><td>{}</td><td>{health}</td><td>{}</td><td>{}</td></tr>",
            e(&id),
            e(&h.address),
            e(&h.version),
            e(&labels.join(", "))
        );
    }
    o.push_str("</table>\n");
}

fn render_databases(o: &mut String, dbs: &[DatabaseStatus]) {
    let e = escape;
    let _ = writeln!(o, "<h2>Databases</h2>");
    if dbs.is_empty() {
        let _ = writeln!(
            o,
            "<p class=\"muted\">No database status yet: the reconciler has not run a pass.</p>"
        );
        return;
    }
    for db in dbs {
        let _ = writeln!(
            o,
            "<h3>{}</h3><p class=\"muted\">revision {} · {} drift corrections · updated {}</p>",
            e(&db.name),
            short(db.observed_revision.as_deref()),
            db.drift_corrections,
            e(&db.updated_at)
        );
        o.push_str("<ul>\n");
        for c in db.conditions.iter().filter(|c| c.status) {
            let since = if c.kind == ConditionType::Suspended {
                format!(" (since {})", e(&c.last_transition_time))
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "<li><span class=\"badge {0}\">{0}</span>{1}: {2}{since}</li>",
                c.kind.as_str(),
                e(&c.reason),
                e(&c.message)
            );
        }
        if let Some(c) = db.condition(ConditionType::Ready).filter(|c| !c.status) {
            let _ = writeln!(
                o,
                "<li><span class=\"badge NotReady\">not ready</span>{}: {}</li>",
                e(&c.reason),
                e(&c.message)
            );
        }
        if db.conditions.is_empty() {
            o.push_str("<li class=\"muted\">no conditions yet</li>\n");
        }
        o.push_str("</ul>\n");
        if !db.instances.is_empty() {
            let _ = writeln!(
                o,
                "<table><tr><th>node</th><th>host</th><th>endpoint</th><th>role</th><th>state</th><th>version</th></tr>"
            );
            for i in &db.instances {
                let role = serde_json::to_value(i.role)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    e(&i.node),
                    e(&i.host),
                    e(&i.endpoint),
                    e(&role),
                    e(&i.state),
                    e(i.version.as_deref().unwrap_or("-"))
                );
            }
            o.push_str("</table>\n");
        }
        render_links(o, db);
        render_restore_checks(o, db);
        if let Some(plan) = &db.last_plan {
            let _ = writeln!(
                o,
                "<p class=\"muted\">last plan, revision {}, planned {}:</p><pre>{}</pre>",
                short(plan.revision.as_deref()),
                e(&plan.planned_at),
                e(&plan.text)
            );
        }
    }
}

/// The replication links of a database with their lag and errors, and the
/// DDL log position per node.
fn render_links(o: &mut String, db: &DatabaseStatus) {
    let e = escape;
    if db.links.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "<table><tr><th>link</th><th>state</th><th>lag</th><th>apply errors</th><th>last error</th></tr>"
    );
    for l in &db.links {
        let lag = match (l.lag_bytes, l.lag_seconds) {
            (Some(b), Some(s)) => format!("{b} B, {s:.3} s"),
            (Some(b), None) => format!("{b} B"),
            _ => "-".into(),
        };
        let _ = writeln!(
            o,
            "<tr><td>{} → {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e(&l.from),
            e(&l.to),
            e(&l.state),
            e(&lag),
            l.apply_errors,
            e(l.last_error.as_deref().unwrap_or("-"))
        );
    }
    o.push_str("</table>\n");
    if !db.ddl_log.is_empty() {
        let positions: Vec<String> = db
            .ddl_log
            .iter()
            .map(|(node, n)| format!("{}: {n}", e(node)))
            .collect();
        let _ = writeln!(
            o,
            "<p class=\"muted\">DDL log position per node (equal: every DDL change in force everywhere): {}</p>",
            positions.join(", ")
        );
    }
}

/// Each node's last restore rehearsal: when, the backup, RTO, RPO, why not.
fn render_restore_checks(o: &mut String, db: &DatabaseStatus) {
    let e = escape;
    if db.restore_checks.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "<table><tr><th>restore rehearsal</th><th>result</th><th>backup</th><th>RTO</th><th>RPO</th><th>ended</th><th>reason</th></tr>"
    );
    for c in &db.restore_checks {
        let secs = |v: Option<f64>| v.map_or("-".into(), |s| format!("{s:.1} s"));
        let _ = writeln!(
            o,
            "<tr><td>{} on {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e(&c.node),
            e(&c.host),
            if c.ok { "passed" } else { "failed" },
            e(c.label.as_deref().unwrap_or("-")),
            secs(c.restore_seconds),
            secs(c.age_seconds),
            e(&c.finished_at),
            e(c.reason.as_deref().unwrap_or("-"))
        );
    }
    o.push_str("</table>\n");
}

fn render_revisions(o: &mut String, revs: &[RevisionRecord]) {
    let e = escape;
    let _ = writeln!(o, "<h2>Recent revisions</h2>");
    if revs.is_empty() {
        let _ = writeln!(o, "<p class=\"muted\">No revisions fetched yet.</p>");
        return;
    }
    let _ = writeln!(
        o,
        "<table><tr><th>commit</th><th>ref</th><th>state</th><th>subject</th><th>author</th><th>fetched</th><th>summary</th></tr>"
    );
    for r in revs {
        let state = serde_json::to_value(r.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            short(Some(&r.sha)),
            e(&r.git_ref),
            e(&state),
            e(&r.subject),
            e(&r.author),
            e(&r.fetched_at),
            e(&r.summary)
        );
    }
    o.push_str("</table>\n");
}

fn render_tasks(o: &mut String, tasks: &[TaskStatus]) {
    let e = escape;
    let _ = writeln!(o, "<h2>Recent tasks</h2>");
    if tasks.is_empty() {
        let _ = writeln!(o, "<p class=\"muted\">No tasks.</p>");
        return;
    }
    let _ = writeln!(
        o,
        "<table><tr><th>task</th><th>kind</th><th>host</th><th>state</th><th>created</th><th>error</th><th>log</th></tr>"
    );
    for t in tasks {
        let id = e(&t.id);
        let class = match t.state.as_str() {
            "failed" => "bad",
            "succeeded" => "ok",
            _ => "",
        };
        let _ = writeln!(
            o,
            "<tr><td>{id}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td>\
             <td><a href=\"/v1/tasks/{id}/log\">log</a> · <a href=\"/v1/tasks/{id}/log?follow=true\">follow</a></td></tr>",
            e(&t.kind),
            e(&t.host),
            t.state.as_str(),
            e(t.created_at.as_deref().unwrap_or("-")),
            e(t.error.as_deref().unwrap_or(""))
        );
    }
    o.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::tasks::TaskState;
    use crate::reconcile::status::{InstanceStatus, PlanRecord};
    use crate::state::InstanceRole;

    #[test]
    fn escape_neutralises_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert(\"x\" + 'y')</script> & co"),
            "&lt;script&gt;alert(&quot;x&quot; + &#39;y&#39;)&lt;/script&gt; &amp; co"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn page_renders_with_no_leader_and_no_databases() {
        let html = render(&PageData {
            cluster_id: "c1".into(),
            answered_by: "h1".into(),
            ..PageData::default()
        });
        assert!(html.contains("leader <span class=\"bad\">none</span>"));
        assert!(html.contains("No database status yet"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.ends_with("</body></html>\n"));
    }

    #[test]
    fn page_escapes_every_text_from_etcd() {
        let mut db = DatabaseStatus::new("orders", "t0");
        db.set(
            ConditionType::Stalled,
            true,
            "StepFailed",
            "<script>alert('x')</script>".into(),
            "t0",
        );
        db.instances.push(InstanceStatus {
            node: "n1".into(),
            host: "h1".into(),
            endpoint: "127.0.0.1:5432".into(),
            role: InstanceRole::Primary,
            state: "running".into(),
            version: Some("17.2".into()),
            streaming: None,
            lag_bytes: None,
            lag_seconds: None,
            archive: None,
        });
        db.links.push(crate::reconcile::status::LinkStatus {
            from: "n2".into(),
            to: "n1".into(),
            subscription: "pgcd_sub_n2_to_n1".into(),
            state: "down".into(),
            lag_bytes: Some(4096),
            lag_seconds: None,
            apply_errors: 3,
            sync_errors: 0,
            conflicts: Default::default(),
            last_error: Some("relation \"<t>\" does not exist".into()),
        });
        db.ddl_log.insert("n1".into(), 4);
        db.last_plan = Some(PlanRecord {
            text: "create <db>".into(),
            ..PlanRecord::default()
        });
        let task = TaskStatus {
            id: "t\"1".into(),
            host: "h1".into(),
            kind: "host.facts".into(),
            state: TaskState::Failed,
            claimant: None,
            created_at: None,
            started_at: None,
            finished_at: None,
            result: None,
            error: Some("<b>boom</b>".into()),
            log: vec![],
        };
        let html = render(&PageData {
            cluster_id: "<c>".into(),
            leader: Some("h1".into()),
            databases: vec![db],
            tasks: vec![task],
            ..PageData::default()
        });
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>boom"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("<span class=\"badge Stalled\">Stalled</span>StepFailed"));
        assert!(html.contains("<pre>create &lt;db&gt;</pre>"));
        assert!(html.contains("<td>primary</td><td>running</td><td>17.2</td>"));
        assert!(html.contains("href=\"/v1/tasks/t&quot;1/log\""));
        assert!(html.contains(
            "<td>n2 → n1</td><td>down</td><td>4096 B</td><td>3</td><td>relation &quot;&lt;t&gt;&quot; does not exist</td>"
        ));
        assert!(html.contains("n1: 4</p>"));
    }
}
