//! The one integration-test binary. Each module covers one area and runs the
//! real `hybrid` binary or the library's public API against real files.

mod util;

/// `hybrid validate`, the fixture table of invalid files, `hybrid schema`.
mod validate;
/// The pure core does no I/O.
mod architecture;
/// Random and garbage input never panics the loader.
mod fuzz;
