//! Static bearer tokens (`--token-auth-file`), kube's CSV: `token,user,uid[,"group1,group2"]`,
//! read with Go's `encoding/csv` rules (quoted fields, `""` escapes, blank lines skipped, a bare
//! quote in an unquoted field is an error, any number of fields per record).
//!
//! Invariants (kube's `tokenfile.NewCSV`): a record needs at least 3 fields; a record with an
//! empty token is skipped; a later duplicate token replaces an earlier one; the 4th field, when
//! present, is split on commas into groups; further fields are ignored.

use crate::error::Error;
use crate::user::UserInfo;
use std::collections::HashMap;

/// Parses CSV as Go's `csv.Reader` with `FieldsPerRecord = -1`.
pub fn parse_csv(input: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut line = 1usize;
    let mut chars = input.chars().peekable();
    while chars.peek().is_some() {
        let start_line = line;
        // Blank lines are skipped.
        if matches!(chars.peek(), Some('\n')) {
            chars.next();
            line += 1;
            continue;
        }
        if matches!(chars.peek(), Some('\r')) {
            chars.next();
            if matches!(chars.peek(), Some('\n')) {
                chars.next();
                line += 1;
            }
            continue;
        }
        let mut record = Vec::new();
        let mut field = String::new();
        let mut col = 0usize;
        loop {
            if matches!(chars.peek(), Some('"')) && field.is_empty() {
                // Quoted field.
                chars.next();
                col += 1;
                loop {
                    match chars.next() {
                        None => {
                            return Err(format!(
                                "record on line {start_line}; parse error on line {line}, column {col}: extraneous or missing \" in quoted-field"
                            ));
                        }
                        Some('"') => {
                            col += 1;
                            match chars.peek() {
                                Some('"') => {
                                    chars.next();
                                    col += 1;
                                    field.push('"');
                                }
                                Some(',') | Some('\n') | Some('\r') | None => break,
                                Some(_) => {
                                    let msg = "extraneous or missing \" in quoted-field";
                                    return Err(if start_line == line {
                                        format!("parse error on line {line}, column {}: {msg}", col + 1)
                                    } else {
                                        format!("record on line {start_line}; parse error on line {line}, column {}: {msg}", col + 1)
                                    });
                                }
                            }
                        }
                        Some('\n') => {
                            line += 1;
                            col = 0;
                            field.push('\n');
                        }
                        Some('\r') if matches!(chars.peek(), Some('\n')) => {}
                        Some(c) => {
                            col += 1;
                            field.push(c);
                        }
                    }
                }
            }
            match chars.next() {
                Some(',') => {
                    col += 1;
                    record.push(std::mem::take(&mut field));
                }
                Some('\n') | None => {
                    record.push(std::mem::take(&mut field));
                    line += 1;
                    break;
                }
                Some('\r') if matches!(chars.peek(), Some('\n') | None) => {}
                Some('"') => return Err(format!("parse error on line {line}, column {}: bare \" in non-quoted-field", col + 1)),
                Some(c) => {
                    col += 1;
                    field.push(c);
                }
            }
        }
        records.push(record);
    }
    Ok(records)
}

/// The users of a token file, by token.
#[derive(Debug, Clone, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

impl TokenFile {
    /// Parses the file's contents; `path` only names it in errors.
    pub fn parse(path: &str, contents: &str) -> Result<TokenFile, Error> {
        let records = parse_csv(contents).map_err(Error::TokenFile)?;
        let mut tokens = HashMap::new();
        for record in records {
            if record.len() < 3 {
                return Err(Error::TokenFile(format!(
                    "token file '{path}' must have at least 3 columns (token, user name, user uid), found {}",
                    record.len()
                )));
            }
            if record[0].is_empty() {
                continue;
            }
            let groups = if record.len() >= 4 { record[3].split(',').map(str::to_string).collect() } else { Vec::new() };
            tokens.insert(record[0].clone(), UserInfo { name: record[1].clone(), uid: record[2].clone(), groups, ..Default::default() });
        }
        Ok(TokenFile { tokens })
    }

    /// Reads `--token-auth-file`.
    pub fn load(path: &std::path::Path) -> Result<TokenFile, Error> {
        let contents = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        TokenFile::parse(&path.display().to_string(), &contents)
    }

    /// The user a token belongs to.
    pub fn user(&self, token: &str) -> Option<&UserInfo> {
        self.tokens.get(token)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// No tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, uid: &str, groups: &[&str]) -> UserInfo {
        UserInfo { name: name.into(), uid: uid.into(), groups: groups.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn token_file_as_kube_reads_it() {
        // kube's tokenfile_test.go TestTokenFile.
        let f = TokenFile::parse(
            "t",
            "\ntoken1,user1,uid1\ntoken2,user2,uid2\ntoken3,user3,uid3,\"group1,group2\"\ntoken4,user4,uid4,\"group2\"\ntoken5,user5,uid5,group5\ntoken6,user6,uid6,group5,otherdata\ntoken7,user7,uid7,\"group1,group2\",otherdata\n",
        )
        .unwrap();
        let cases = [
            ("token1", Some(user("user1", "uid1", &[]))),
            ("token2", Some(user("user2", "uid2", &[]))),
            ("token3", Some(user("user3", "uid3", &["group1", "group2"]))),
            ("token4", Some(user("user4", "uid4", &["group2"]))),
            ("token5", Some(user("user5", "uid5", &["group5"]))),
            ("token6", Some(user("user6", "uid6", &["group5"]))),
            ("token7", Some(user("user7", "uid7", &["group1", "group2"]))),
            ("token8", None),
        ];
        for (token, want) in cases {
            assert_eq!(f.user(token), want.as_ref(), "{token}");
        }
    }

    #[test]
    fn bad_token_files_are_refused() {
        // TestBadTokenFile, TestInsufficientColumnsTokenFile.
        assert!(TokenFile::parse("t", "\ntoken1,user1,uid1\ntoken2,user2,uid2\ntoken3,user3\ntoken4\n").is_err());
        let err = TokenFile::parse("/etc/tokens.csv", "token4\n").unwrap_err();
        assert_eq!(err.to_string(), "token file '/etc/tokens.csv' must have at least 3 columns (token, user name, user uid), found 1");
        assert!(TokenFile::parse("t", "to\"ken,u,1\n").unwrap_err().to_string().contains("bare \" in non-quoted-field"));
        assert!(TokenFile::parse("t", "\"tok\"en,u,1\n").unwrap_err().to_string().contains("extraneous or missing \" in quoted-field"));
        assert!(TokenFile::parse("t", "\"unterminated,u,1\n").is_err());
    }

    #[test]
    fn edge_cases_of_the_csv() {
        // TestEmptyTokenTokenFile: an empty token is skipped, not an error.
        assert!(TokenFile::parse("t", ",user5,uid5\n").unwrap().is_empty());
        // CRLF, no trailing newline, quotes inside quotes, duplicates: the later one wins.
        let f = TokenFile::parse("t", "a,u1,1\r\nb,\"say \"\"hi\"\"\",2\r\na,u3,3").unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f.user("a").unwrap().name, "u3");
        assert_eq!(f.user("b").unwrap().name, "say \"hi\"");
        // A quoted field may span lines; spaces are kept.
        let f = TokenFile::parse("t", "c, spaced ,\"multi\nline\"\n").unwrap();
        assert_eq!(f.user("c").unwrap().name, " spaced ");
        assert_eq!(f.user("c").unwrap().uid, "multi\nline");
        assert_eq!(parse_csv("x\n\n\ny\n").unwrap(), vec![vec!["x".to_string()], vec!["y".to_string()]]);
    }
}
