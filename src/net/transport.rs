//! The one transport enum of STUN and tracked flows: UDP or TCP, as config, metric labels and
//! messages spell it.

use std::fmt;

use serde::Deserialize;

/// UDP or TCP: a STUN exchange's, a tracked flow's (the `dns` kind has its own, with TLS).
/// Config accepts `udp` and `tcp`; labels and messages use the same words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Udp, Transport::Tcp];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_and_labels_spell_it_in_lowercase() {
        for t in Transport::ALL {
            let parsed: Transport = serde_norway::from_str(t.as_str()).unwrap();
            assert_eq!(parsed, t);
            assert_eq!(t.to_string(), t.as_str());
        }
        assert!(serde_norway::from_str::<Transport>("UDP").is_err());
        assert!(serde_norway::from_str::<Transport>("http").is_err());
    }
}
