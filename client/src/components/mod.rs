//! The page's parts, one concern each.

pub mod message_list;
pub mod protocol;
pub mod publish_form;
pub mod status_bar;
pub mod token_panel;
pub mod topic_picker;

pub use message_list::MessageList;
pub use protocol::ProtocolStat;
pub use publish_form::PublishForm;
pub use status_bar::StatusBar;
pub use token_panel::TokenPanel;
pub use topic_picker::TopicPicker;
