//! The autoharness binary: all logic lives in the library (`autoharness::cli::main`).

fn main() {
    std::process::exit(autoharness::cli::main());
}
