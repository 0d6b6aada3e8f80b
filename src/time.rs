//! The two timestamps every table item carries (seed: "Each DynamoDB function must record
//! `createdTimestampUTC` and `createdTimestampUnix`").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `createdTimestampUTC` ("YYYY-MM-DD HH:MM:SS") and `createdTimestampUnix` (seconds, a string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    #[serde(rename = "createdTimestampUTC")]
    pub utc: String,
    #[serde(rename = "createdTimestampUnix")]
    pub unix: String,
}

impl Created {
    pub fn at(t: DateTime<Utc>) -> Self {
        Self {
            utc: t.format("%Y-%m-%d %H:%M:%S").to_string(),
            unix: t.timestamp().to_string(),
        }
    }

    pub fn now() -> Self {
        Self::at(Utc::now())
    }
}

/// "YYYY-MM-DD HH:MM:SS" in UTC, the format WordPress and the seed use.
pub fn sql_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_like_the_seed() {
        let t = Utc.with_ymd_and_hms(2025, 2, 18, 8, 49, 2).unwrap();
        let c = Created::at(t);
        assert_eq!(c.utc, "2025-02-18 08:49:02");
        assert_eq!(c.unix, t.timestamp().to_string());
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["createdTimestampUTC"], "2025-02-18 08:49:02");
        assert!(json["createdTimestampUnix"].is_string());
    }
}
