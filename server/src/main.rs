//! The server binary: [`server::cli::main`].

fn main() -> anyhow::Result<()> {
    server::cli::main()
}
