//! The generated repository the benchmarks share: database `i` of a large
//! cluster on 50 hosts (two nodes, one with a standby; users with secret
//! references; extensions; settings; a pg_hba line; a backup schedule).

use pgcd::spec::SourceFile;

/// The file `databases/db_<i>.yaml`.
pub fn database(i: usize) -> SourceFile {
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
  work_mem: 16MB
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
