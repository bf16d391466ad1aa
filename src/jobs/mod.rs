//! The Jobs the launcher manages: their compact records and state ([`state`]), the API's view
//! of them ([`view`]), the watch-fed index ([`index`]), and the pod log stream ([`logs`]).

pub mod adopt;
pub mod events;
pub mod index;
pub mod intern;
pub mod kube_events;
pub mod logs;
pub mod remote;
pub mod slim;
pub mod state;
pub mod view;

pub use index::JobIndex;
pub use state::{JobRecord, PodRecord};
pub use view::job_view;
