//! The server, exactly: [`server::cli::main`]. Built with this package, so
//! that the browser tests start a server binary that cargo has built for
//! them, with the features of their own build (a `cargo build -p server`
//! from inside a test resolves other features and rebuilds much of the
//! dependency tree).

fn main() -> anyhow::Result<()> {
    server::cli::main()
}
