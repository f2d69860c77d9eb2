//! The page's parts, one concern each.

pub mod message_list;
pub mod protocol;
pub mod publish_form;
pub mod status_bar;
pub mod topic_picker;

pub use message_list::MessageList;
pub use protocol::ProtocolStat;
pub use publish_form::PublishForm;
pub use status_bar::StatusBar;
pub use topic_picker::TopicPicker;
