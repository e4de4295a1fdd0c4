//! `sqlx::migrate!` embeds migrations/ at compile time, but Cargo does not
//! know the crate reads that folder: without this, a new migration reaches
//! the binary only once something else in the crate changes.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
