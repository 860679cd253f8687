//! Rebuilds the portal when the web UI's build output (web/dist, embedded by src/web.rs) appears
//! or changes: rust-embed tracks the files it embedded, but not a folder that was missing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::path::Path::new("web/dist").exists() {
        println!("cargo:rerun-if-changed=web/dist");
    } else {
        // The folder's parent changes when `npm run build` creates it.
        println!("cargo:rerun-if-changed=web");
    }
}
