//! The `pgcd` binary: parses the command line and hands over to `pgcd::cli`.

fn main() {
    let code = pgcd::cli::main();
    std::process::exit(code);
}
