//! The Jobs the launcher manages: their compact records and state ([`state`]), what the API shows
//! of them ([`view`]), the watch-fed index ([`index`]), and the pod log stream ([`logs`]).

pub mod index;
pub mod logs;
pub mod state;
pub mod view;

pub use index::JobIndex;
pub use state::{JobRecord, JobState, PodRecord};
pub use view::{JobView, PodView};
