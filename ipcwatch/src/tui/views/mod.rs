//! One file per view, each with its own `render` and `handle_key`; what
//! they share is in [`widgets`], the key help in [`help`]. Views read
//! [`super::state`] and draw with [`super::theme`]; they never see the
//! app or the sources.

pub mod channels;
pub mod help;
pub mod overview;
pub mod processes;
pub mod races;
pub mod regions;
pub mod widgets;
