//! Job templates: placeholders ([`placeholder`]), parsing and validation ([`spec`]), rendering a
//! request into a manifest ([`render`]), all pure, and the [`store`] that keeps them current from
//! ConfigMaps.

pub mod placeholder;
pub mod render;
pub mod spec;
pub mod store;

pub use render::{RenderError, RenderInput};
pub use spec::{Parameter, Template, TemplateError};
pub use store::{TemplateLookup, TemplateStore};
