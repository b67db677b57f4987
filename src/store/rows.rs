//! The rows an import hands the store: a member's attributes with the columns its file
//! had, an order line or an event with the member it belongs to. `ingest::rows` parses
//! them from input text; they live here, with the writes that take them, so the store
//! does not import its own importer.

use crate::domain::Text;
use super::model::{Event, Member, OrderLine};

/// A members.csv row: the attributes it carries and which columns the file had (a column
/// the file lacks leaves the stored value alone). `present` is indexed like the members
/// columns of `ingest::rows::Kind::columns`.
#[derive(Debug, Clone)]
pub struct MemberRow {
    pub id: String,
    pub attrs: Member,
    pub present: [bool; 11],
}

impl MemberRow {
    /// Applies this row to a stored (or new) member.
    pub fn apply_to(&self, m: &mut Member) {
        let a = &self.attrs;
        let p = &self.present;
        if p[1] { m.name.clone_from(&a.name) }
        if p[2] { m.email.clone_from(&a.email) }
        if p[3] { m.phone.clone_from(&a.phone) }
        if p[4] { m.gender = a.gender }
        if p[5] { m.birth_year = a.birth_year }
        if p[6] { m.city.clone_from(&a.city) }
        if p[7] { m.signup_ts = a.signup_ts }
        if p[8] { m.opted_in_email = a.opted_in_email }
        if p[9] { m.opted_in_sms = a.opted_in_sms }
        if p[10] { m.tz.clone_from(&a.tz) }
        m.known = true;
    }
}

/// An orders.csv row: the line and the member it belongs to.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OrderRow {
    pub member_id: Text,
    pub line: OrderLine,
}

/// An events.csv row: the event and the member it belongs to.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EventRow {
    pub member_id: Text,
    pub event: Event,
}
