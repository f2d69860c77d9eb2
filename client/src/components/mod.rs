//! The page's parts, one concern each.

pub mod event_details;
pub mod message_list;
pub mod protocol;
pub mod publish_form;
pub mod recorder;
pub mod shortcuts;
pub mod status_bar;
pub mod token_panel;
pub mod topic_list;
pub mod topic_picker;
pub mod transport_panel;

pub use event_details::EventDetails;
pub use message_list::MessageList;
pub use protocol::ProtocolStat;
pub use publish_form::PublishForm;
pub use recorder::Recorder;
pub use shortcuts::use_shortcuts;
pub use status_bar::StatusBar;
pub use token_panel::TokenPanel;
pub use topic_list::TopicList;
pub use topic_picker::TopicPicker;
pub use transport_panel::TransportPanel;
