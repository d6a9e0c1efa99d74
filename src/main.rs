//! The autoharness binary: all logic lives in the library (`autoharness::app::cli::main`).

fn main() {
    std::process::exit(autoharness::app::cli::main());
}

// Ingestion allocates and frees many small strings and maps (parsed JSON): glibc malloc
// spent a fifth of `mine` there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
