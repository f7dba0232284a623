//! The test world's Rust frontend: one exported function, its value from two dependency crates.

#[no_mangle]
pub extern "C" fn vllm_rust_answer() -> u32 {
    tw_answer::answer() + tw_offset::offset()
}
