//! The plugin lifecycle's vocabulary: the [`Hook`]s in the order they run, the [`Event`]s
//! plugins may subscribe to, and how a plugin task ends ([`TaskStatus`]).

use serde::{Deserialize, Serialize};

/// A lifecycle hook. Stored and sent as its camelCase name (`preValidate`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Hook {
    /// Checks the video; a refusal, failure or timeout rejects it.
    PreValidate,
    /// Runs after validation.
    PostValidate,
    /// Adds metadata (titles, tags, transcripts).
    PreMetadata,
    /// Runs last.
    PostMetadata,
}

impl Hook {
    /// The hooks, in the order they run.
    pub const ALL: [Hook; 4] = [
        Hook::PreValidate,
        Hook::PostValidate,
        Hook::PreMetadata,
        Hook::PostMetadata,
    ];

    /// The hook's name as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::PreValidate => "preValidate",
            Hook::PostValidate => "postValidate",
            Hook::PreMetadata => "preMetadata",
            Hook::PostMetadata => "postMetadata",
        }
    }

    /// Parses a hook name.
    pub fn parse(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.as_str() == name)
    }

    /// Its position in [`Hook::ALL`] (0 for the first).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The hook that runs after this one, `None` after the last.
    pub fn next(self) -> Option<Hook> {
        Hook::ALL.get(self.index() + 1).copied()
    }

    /// The hooks that run after `current` (all of them after `None`, the lifecycle's start).
    pub fn after(current: Option<Hook>) -> &'static [Hook] {
        &Hook::ALL[current.map_or(0, |h| h.index() + 1)..]
    }
}

/// An event plugins may subscribe to for plain notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A broadcast went live.
    BroadcastStarted,
    /// A broadcast ended.
    BroadcastEnded,
    /// A video was transcoded.
    VideoReady,
    /// A video went through its lifecycle.
    VideoPublished,
    /// A video's lifecycle started.
    LifecycleStarted,
    /// A video's lifecycle ended (published or rejected).
    LifecycleCompleted,
}

impl Event {
    /// Every event.
    pub const ALL: [Event; 6] = [
        Event::BroadcastStarted,
        Event::BroadcastEnded,
        Event::VideoReady,
        Event::VideoPublished,
        Event::LifecycleStarted,
        Event::LifecycleCompleted,
    ];

    /// The event's name as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::BroadcastStarted => "broadcast.started",
            Event::BroadcastEnded => "broadcast.ended",
            Event::VideoReady => "video.ready",
            Event::VideoPublished => "video.published",
            Event::LifecycleStarted => "lifecycle.started",
            Event::LifecycleCompleted => "lifecycle.completed",
        }
    }

    /// Parses an event name.
    pub fn parse(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// Where a plugin task is. Stored as the snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for the plugin's answer.
    Pending,
    /// The plugin answered `/success`.
    Succeeded,
    /// The plugin answered `/failure`.
    Failed,
    /// The deadline passed first.
    TimedOut,
}

impl TaskStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::TimedOut => "timed_out",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_run_in_order_and_keep_their_names() {
        assert_eq!(Hook::PreValidate.next(), Some(Hook::PostValidate));
        assert_eq!(Hook::PreMetadata.next(), Some(Hook::PostMetadata));
        assert_eq!(Hook::PostMetadata.next(), None);
        assert_eq!(Hook::after(None), &Hook::ALL);
        assert_eq!(Hook::after(Some(Hook::PostValidate)), &Hook::ALL[2..]);
        for hook in Hook::ALL {
            assert_eq!(Hook::parse(hook.as_str()), Some(hook));
            let json = serde_json::to_value(hook).expect("serialize");
            assert_eq!(json, serde_json::Value::from(hook.as_str()));
        }
        assert_eq!(Hook::parse("start"), None);
    }

    #[test]
    fn events_and_task_statuses_keep_their_names() {
        for event in Event::ALL {
            assert_eq!(Event::parse(event.as_str()), Some(event));
        }
        let json = serde_json::to_value(TaskStatus::TimedOut).expect("serialize");
        assert_eq!(json, serde_json::Value::from("timed_out"));
    }
}
