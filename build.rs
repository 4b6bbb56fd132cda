//! Regenerates `include/vnet.h` from `src/ffi.rs` with cbindgen. The header is
//! committed; CI checks that a build leaves it unchanged.

use std::path::Path;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=src/ffi.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    // A versioned SONAME, so installed copies follow the usual ABI rules.
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("version");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libvnet.so.{major}");
    // once_cell's critical section, kept out of the exported symbols.
    println!("cargo:rerun-if-changed=src/critical_section.c");
    cc::Build::new()
        .file("src/critical_section.c")
        .compile("vnet_critical_section");
    let config =
        cbindgen::Config::from_file(Path::new(&dir).join("cbindgen.toml")).expect("cbindgen.toml");
    let header = cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("generating include/vnet.h");
    let path = Path::new(&dir).join("include/vnet.h");
    let mut text = Vec::new();
    header.write(&mut text);
    // Write only on change, so the header's mtime means something.
    if std::fs::read(&path).ok().as_deref() != Some(text.as_slice()) {
        std::fs::create_dir_all(path.parent().unwrap()).expect("include/");
        std::fs::write(&path, text).expect("writing include/vnet.h");
    }
}
