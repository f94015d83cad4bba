//! Sending plan steps to an agent as `pg.step` tasks directly, the way the
//! leader's `cluster::tasks::dispatch` writes them (for steps no planner
//! pass makes yet: the backup and restore of operations), and waiting for
//! their end.

use super::*;
use serde_json::json;

/// Writes a `pg.step` task carrying `step` for its host, with `image`; the
/// task id is `id`. Returns the id.
pub fn send_step(
    etcd: &str,
    step: &pgcd::plan::Step,
    image: &str,
    id: &str,
    budget: Duration,
) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let host = step.host.to_string();
    let args = serde_json::to_value(pgcd::exec::StepArgs {
        step: step.clone(),
        image: image.to_string(),
        replication: None,
    })
    .expect("step args");
    rt.block_on(async {
        let mut client = etcd_client::Client::connect([etcd], Some(super::etcd_options()))
            .await
            .expect("etcd");
        let deadline = (chrono::Utc::now() + chrono::Duration::from_std(budget).unwrap())
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let spec =
            json!({ "id": id, "kind": pgcd::exec::KIND, "args": args, "deadline": deadline });
        let status = json!({ "id": id, "host": host, "kind": pgcd::exec::KIND, "state": "pending",
                             "created_at": chrono::Utc::now().to_rfc3339() });
        let status_key = format!("/pgcd/v1/tasks/{id}");
        let absent =
            etcd_client::Compare::version(status_key.clone(), etcd_client::CompareOp::Equal, 0);
        let txn = etcd_client::Txn::new().when([absent]).and_then([
            etcd_client::TxnOp::put(
                format!("/pgcd/v1/hosts/{host}/tasks/{id}"),
                spec.to_string(),
                None,
            ),
            etcd_client::TxnOp::put(status_key, status.to_string(), None),
        ]);
        let r = client.txn(txn).await.expect("write the task");
        assert!(r.succeeded(), "task {id} exists already");
    });
    id.to_string()
}

/// Waits until task `id` has finished; returns its record. Panics, with
/// its log, when it failed.
pub fn wait_task(api: &str, id: &str, deadline: Duration) -> Value {
    let t = wait_for(&format!("task {id} finished"), deadline, || {
        get_json(&format!("{api}/v1/tasks/{id}"))
            .filter(|t| t["state"] == "succeeded" || t["state"] == "failed")
    });
    assert_eq!(
        t["state"],
        "succeeded",
        "task {id} failed: {}\n{}",
        t["error"],
        get_text(&format!("{api}/v1/tasks/{id}/log")).unwrap_or_default()
    );
    t
}
