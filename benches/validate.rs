//! How long validating a large repository takes: 1,000 generated database
//! files (plus operations), single-threaded. Target: under 1 s.
//! Run: `cargo bench --bench validate` (prints a Markdown row for bench/validate.md).

use pgcd::spec::{load, SourceFile};
use std::time::Instant;

fn database(i: usize) -> SourceFile {
    let host = |k: usize| format!("h{}", (i + k) % 50);
    let text = format!(
        r#"# yaml-language-server: $schema=../../schema/database.schema.json
database_name: db_{i}
postgres_version: "17"
port: {port}
cpus: "2"
memory: 4GiB
nodes:
  - name: n1
    host_ids: [{h0}, {h1}]
  - name: n2
    host_ids: [{h2}]
    postgresql_conf:
      work_mem: 32MB
database_users:
  - username: owner_{i}
    password: {{env: OWNER_{i}_PASSWORD}}
    db_owner: true
  - username: app_{i}
    password: {{file: /etc/pgcd/app_{i}}}
    roles: [pg_read_all_data]
extensions: [vector, pg_cron, {{name: postgis, version: "3.5"}}]
postgresql_conf:
  max_connections: 200
  shared_buffers: 1GB
pg_hba_conf:
  - host db_{i} app_{i} 10.0.0.0/8 scram-sha-256
backup_config:
  repositories:
    - id: local
      type: posix
      base_path: /var/lib/pgbackrest
  schedules:
    - id: nightly
      type: full
      cron_expression: "0 2 * * *"
"#,
        port = 10000 + i,
        h0 = host(0),
        h1 = host(1),
        h2 = host(2),
    );
    SourceFile {
        path: format!("databases/db_{i}.yaml"),
        text,
    }
}

fn main() {
    let mut files: Vec<SourceFile> = (0..1000).map(database).collect();
    files.extend((0..100).map(|i| SourceFile {
        path: format!("operations/backup-{i}.yaml"),
        text: format!("id: backup-{i}\nkind: Backup\ndatabase: db_{i}\nnode: n1\n"),
    }));
    let bytes: usize = files.iter().map(|f| f.text.len()).sum();
    // Warm up once, then take the best and median of several runs.
    load(&files).expect("generated repository is valid");
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let desired = load(&files).expect("valid");
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(desired.databases.len(), 1000);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "| 1,000 databases + 100 operations ({:.1} MiB of YAML) | {:.0} ms | {:.0} ms |",
        bytes as f64 / (1 << 20) as f64,
        times[0] * 1000.0,
        times[times.len() / 2] * 1000.0
    );
}
