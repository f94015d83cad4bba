//! The `pgcd` binary: parses the command line and hands over to `pgcd::cli`.

fn main() {
    // Before any thread exists: libgit2 keeps its timeouts in plain globals.
    pgcd::source::git::init_network_timeouts();
    let code = pgcd::cli::main();
    std::process::exit(code);
}
