//! Job templates: parsing and validation ([`spec`]), rendering a request into a manifest
//! ([`render`]), both pure, and the [`store`] that keeps them current from ConfigMaps.

pub mod render;
pub mod spec;
pub mod store;

pub use render::{ParamValue, RenderError, RenderInput};
pub use spec::{Parameter, Template, TemplateError, TemplateSource};
pub use store::{TemplateLookup, TemplateStatus, TemplateStore};
