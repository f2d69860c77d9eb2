//! The topics panel's figures: `GET /topics` gives each topic's
//! `published_total`; its rate is the difference between two answers over
//! the time between them.

use shared::TopicsPage;

/// One topic as the panel shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicLine {
    /// Its name.
    pub name: String,
    /// Streams that name it exactly.
    pub subscribers: u64,
    /// Events it holds for resuming clients.
    pub retained: u64,
    /// Events per second since the previous answer (`None` for the first).
    pub per_second: Option<f64>,
}

/// The previous answer's totals, by name.
#[derive(Debug, Clone, Default)]
pub struct TopicRates {
    /// (name, published_total) of the previous answer.
    previous: Vec<(String, u64)>,
    previous_at: Option<f64>,
}

impl TopicRates {
    /// No answer seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in the answer received at `now_ms` and returns its lines.
    pub fn update(&mut self, page: &TopicsPage, now_ms: f64) -> Vec<TopicLine> {
        let elapsed = self.previous_at.map(|t| now_ms - t).filter(|&d| d > 0.0);
        let lines = page
            .topics
            .iter()
            .map(|topic| {
                let before = self
                    .previous
                    .iter()
                    .find(|(name, _)| *name == topic.name)
                    .map(|(_, total)| *total);
                let per_second = match (before, elapsed) {
                    (Some(before), Some(ms)) => {
                        Some(topic.published_total.saturating_sub(before) as f64 * 1000.0 / ms)
                    }
                    // New since the last answer: all of it is recent.
                    (None, Some(ms)) => Some(topic.published_total as f64 * 1000.0 / ms),
                    _ => None,
                };
                TopicLine {
                    name: topic.name.clone(),
                    subscribers: topic.subscribers,
                    retained: topic.retained,
                    per_second,
                }
            })
            .collect();
        self.previous = page
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.published_total))
            .collect();
        self.previous_at = Some(now_ms);
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::TopicSummary;

    fn page(topics: &[(&str, u64)]) -> TopicsPage {
        TopicsPage {
            topics: topics
                .iter()
                .map(|&(name, total)| TopicSummary {
                    name: name.to_owned(),
                    subscribers: 1,
                    retained: total.min(100),
                    last_seq: total,
                    published_total: total,
                })
                .collect(),
            next: None,
            history_per_topic: 100,
        }
    }

    #[test]
    fn rates_come_from_the_totals_between_two_answers() {
        let mut rates = TopicRates::new();
        let first = rates.update(&page(&[("news", 10), ("ticker", 100)]), 1000.0);
        assert!(first.iter().all(|line| line.per_second.is_none()));
        let second = rates.update(
            &page(&[("a.new", 4), ("news", 10), ("ticker", 113)]),
            3000.0,
        );
        let rate = |name: &str| {
            second
                .iter()
                .find(|line| line.name == name)
                .and_then(|line| line.per_second)
        };
        assert_eq!(rate("ticker"), Some(6.5));
        assert_eq!(rate("news"), Some(0.0));
        assert_eq!(rate("a.new"), Some(2.0));
        assert_eq!(second[0].subscribers, 1);
        // A server restarted: totals went down; no negative rate.
        let third = rates.update(&page(&[("ticker", 3)]), 4000.0);
        assert_eq!(third[0].per_second, Some(0.0));
    }
}
