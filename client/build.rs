//! Size of the page's wasm: release builds for wasm32 link without the
//! symbol-name section (about a quarter of the file), keeping the
//! `target_features` section that wasm-bindgen reads to detect reference
//! types. This does what `wasm-opt` would otherwise do for names; see the
//! note in `index.html` on why trunk does not run Debian's `wasm-opt`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    if wasm && release {
        println!("cargo:rustc-link-arg-bins=--strip-all");
        println!("cargo:rustc-link-arg-bins=--keep-section=target_features");
    }
}
