//! Panics inside a harness, as the server sees them.

/// Runs `f` with a silent panic hook, so that a `catch_unwind` inside it
/// works as it does in the server (libFuzzer's hook aborts the process
/// before any unwinding); the previous hook is put back after.
pub fn with_caught_panics<T>(f: impl FnOnce() -> T) -> T {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = f();
    std::panic::set_hook(previous);
    out
}
