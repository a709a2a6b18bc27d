//! The customers grid's search: what is stored to search in, and what a typed query becomes.
//! Both go through [`fold`], so a query matches whatever width, case or composition the
//! customer or the admin typed (full-width `ＴＡＮＡＫＡ` finds `tanaka`, half-width `ﾀﾅｶ`
//! finds `タナカ`).

use unicode_normalization::UnicodeNormalization;

use crate::{Error, Result};

/// Longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 100;

/// Queries shorter than this (in characters) cannot be looked up by trigrams: they match the
/// start of a word (a whole word for one character) where the database can index that, and
/// anywhere otherwise.
pub const TRIGRAM: usize = 3;

/// NFKC, lower case, every run of white space one space, trimmed.
pub fn fold(raw: &str) -> String {
    let lower: String = raw.nfkc().collect::<String>().to_lowercase();
    lower.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a customer's row is searched in: the address, then the names in both orders (so
/// "Taro Tanaka" and "田中 太郎" both find the customer), one per line.
pub fn search_text(email_key: &str, firstname: &str, lastname: &str) -> String {
    let first = fold(firstname);
    let last = fold(lastname);
    let mut text = fold(email_key);
    for names in [[&first, &last], [&last, &first]] {
        text.push('\n');
        text.push_str(
            &names
                .iter()
                .filter(|n| !n.is_empty())
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    text
}

/// A search typed in the grid, folded like [`search_text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search(String);

impl Search {
    /// `None` for a query that is empty once folded; too long a query is refused.
    pub fn parse(raw: &str) -> Result<Option<Self>> {
        if raw.chars().count() > MAX_QUERY_CHARS {
            return Err(Error::bad_input(
                "search",
                format!("must be at most {MAX_QUERY_CHARS} characters"),
            ));
        }
        let folded = fold(raw);
        Ok((!folded.is_empty()).then_some(Self(folded)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// One or two characters: too short for a trigram index.
    pub fn is_short(&self) -> bool {
        self.0.chars().count() < TRIGRAM
    }

    /// A `LIKE` pattern matching the query anywhere, with `\` as the escape character.
    pub fn like_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.0.len() + 2);
        pattern.push('%');
        for c in self.0.chars() {
            if matches!(c, '\\' | '%' | '_') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_case_and_spacing_are_folded() {
        assert_eq!(fold("  ＴＡＮＡＫＡ\u{3000}Taro "), "tanaka taro");
        assert_eq!(fold("ﾀﾅｶ"), "タナカ");
        assert_eq!(fold("Ｋｉｍ  민준"), "kim 민준");
        // Decomposed Hangul composes.
        assert_eq!(fold("\u{1100}\u{1175}\u{11B7}"), "김");
    }

    #[test]
    fn the_stored_text_has_the_address_and_both_name_orders() {
        assert_eq!(
            search_text("tanaka.taro@example.jp", "太郎", "田中"),
            "tanaka.taro@example.jp\n太郎 田中\n田中 太郎"
        );
        assert_eq!(search_text("a@b.c", "", "Lee"), "a@b.c\nlee\nlee");
    }

    #[test]
    fn queries_are_folded_bounded_and_escaped() {
        let q = Search::parse(" ＴＡＮＡＫＡ ").unwrap().unwrap();
        assert_eq!(q.as_str(), "tanaka");
        assert!(!q.is_short());
        assert!(Search::parse("田中").unwrap().unwrap().is_short());
        assert_eq!(Search::parse(" \t ").unwrap(), None);
        assert!(Search::parse(&"a".repeat(MAX_QUERY_CHARS + 1)).is_err());
        assert!(Search::parse(&"田".repeat(MAX_QUERY_CHARS)).is_ok());
        let q = Search::parse("50%_off\\").unwrap().unwrap();
        assert_eq!(q.like_pattern(), "%50\\%\\_off\\\\%");
    }
}
