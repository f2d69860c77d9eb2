//! What the tabs of this page say to each other over a
//! `BroadcastChannel`: how many streams each holds open, for the
//! connection-limit hint.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{BroadcastChannel, MessageEvent};

use super::{now, with_shared, Shared};
use crate::conn_limit::{Announcement, ANNOUNCE_EVERY_MS, CHANNEL};

/// The channel the tabs of this page share, and the callback it calls.
type TabChannel = (BroadcastChannel, Closure<dyn FnMut(MessageEvent)>);

/// This tab on the channel.
pub(super) struct Tabs {
    /// The channel and its message callback, once joined.
    channel: RefCell<Option<TabChannel>>,
    /// This tab's random id on the channel.
    id: String,
    /// When this tab last announced its streams.
    announced_at: Cell<f64>,
}

impl Tabs {
    /// Not yet on the channel, with a random id.
    pub(super) fn new() -> Self {
        Self {
            channel: RefCell::new(None),
            id: format!("{:x}", (js_sys::Math::random() * 1e15) as u64),
            announced_at: Cell::new(0.0),
        }
    }

    /// Whether this tab is due to announce its streams again at `at`.
    pub(super) fn due(&self, at: f64) -> bool {
        at - self.announced_at.get() >= ANNOUNCE_EVERY_MS
    }

    fn post(&self, announcement: &Announcement) {
        if let Some((channel, _)) = self.channel.borrow().as_ref() {
            let _ = channel.post_message(&announcement.encode().into());
        }
    }
}

/// Joins the channel the tabs of this page announce their streams on,
/// and says hello so that the others announce themselves.
pub(super) fn listen_to_tabs(shared: &Rc<Shared>) {
    let Ok(channel) = BroadcastChannel::new(CHANNEL) else {
        return;
    };
    let weak = Rc::downgrade(shared);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let Some(text) = event.data().as_string() else {
            return;
        };
        let Some(announcement) = Announcement::decode(&text) else {
            return;
        };
        with_shared(&weak, |shared| {
            let answer = shared
                .inner
                .borrow_mut()
                .inspect
                .peers
                .heard(announcement, now());
            if answer {
                announce(shared);
            }
        });
    });
    channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    let _ = channel.post_message(&Announcement::Hello.encode().into());
    *shared.tabs.channel.borrow_mut() = Some((channel, on_message));
}

/// Tells the other tabs how many streams this tab holds open.
pub(super) fn announce(shared: &Rc<Shared>) {
    let open = u32::from(shared.inner.borrow().link.is_open());
    let tabs = &shared.tabs;
    tabs.announced_at.set(now());
    tabs.post(&Announcement::Streams {
        id: tabs.id.clone(),
        open,
    });
}

/// Tells the other tabs this one is going away.
pub(super) fn say_bye(shared: &Rc<Shared>) {
    let tabs = &shared.tabs;
    tabs.post(&Announcement::Bye {
        id: tabs.id.clone(),
    });
}
