//! Field rules of every timeline request, one function per request. Each returns the
//! request's values in the form the service works with (lower-case handles, numeric post
//! ids, page sizes) or INVALID_ARGUMENT naming the field and the reason; nothing here touches
//! the store.

use meshwork_common::error::{ServiceError, ServiceResult};
use meshwork_common::fields;
use meshwork_proto::pb::timeline::v1 as pb;

/// Most Unicode scalar values in a post.
pub const MAX_POST_CHARS: usize = 280;
/// Most characters of a display name.
pub const MAX_DISPLAY_NAME: usize = 50;
/// Default page size of timelines.
pub const DEFAULT_TIMELINE_PAGE: usize = 50;
/// Largest page size of timelines.
pub const MAX_TIMELINE_PAGE: usize = 200;

/// Checks a handle (`[A-Za-z0-9_]{3,15}`) and returns it lower case.
pub fn handle(field: &str, handle: &str) -> ServiceResult<String> {
    if handle.is_empty() {
        return Err(ServiceError::invalid(field, "required"));
    }
    if !(3..=15).contains(&handle.len()) || !handle.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ServiceError::invalid(field, "must be 3-15 characters of [A-Za-z0-9_]"));
    }
    Ok(handle.to_ascii_lowercase())
}

/// Checks a post id (a positive decimal number) and returns it.
pub fn post_id(field: &str, id: &str) -> ServiceResult<u64> {
    if id.is_empty() {
        return Err(ServiceError::invalid(field, "required"));
    }
    match id.parse::<u64>() {
        Ok(n) if n > 0 && id.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(ServiceError::invalid(field, "must be a post id: a positive decimal number")),
    }
}

/// Checks the text of a post: 1-280 Unicode scalar values, not blank, no control characters
/// but newlines.
pub fn post_text(field: &str, text: &str) -> ServiceResult<()> {
    if text.trim().is_empty() {
        return Err(ServiceError::invalid(field, "required: 1-280 characters, not only whitespace"));
    }
    if text.chars().count() > MAX_POST_CHARS {
        return Err(ServiceError::invalid(field, format!("at most {MAX_POST_CHARS} characters")));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ServiceError::invalid(field, "must not contain control characters other than newline"));
    }
    Ok(())
}

/// CreateUser: (lower-case handle, display name).
pub fn create_user(req: &pb::CreateUserRequest) -> ServiceResult<String> {
    let key = handle("handle", &req.handle)?;
    fields::text("display_name", &req.display_name, MAX_DISPLAY_NAME, false)?;
    if req.display_name.chars().any(char::is_control) {
        return Err(ServiceError::invalid("display_name", "must not contain control characters"));
    }
    Ok(key)
}

/// Follow and Unfollow: (user, target), both lower case and different.
pub fn follow_pair(user: &str, target: &str) -> ServiceResult<(String, String)> {
    let user = handle("user", user)?;
    let target = handle("target", target)?;
    if user == target {
        return Err(ServiceError::invalid("target", "a user cannot follow themselves"));
    }
    Ok((user, target))
}

/// ListFollowers and ListFollowing: (user, page size).
pub fn list(user: &str, page_size: i32) -> ServiceResult<(String, usize)> {
    Ok((handle("user", user)?, fields::page_size("page_size", page_size)?))
}

/// GetUserTimeline and GetHomeTimeline: (user, page size).
pub fn timeline(user: &str, page_size: i32) -> ServiceResult<(String, usize)> {
    let user = handle("user", user)?;
    let size = fields::page_size_within("page_size", page_size, DEFAULT_TIMELINE_PAGE, MAX_TIMELINE_PAGE)?;
    Ok((user, size))
}

/// CreatePost: (author, reply_to).
pub fn create_post(req: &pb::CreatePostRequest) -> ServiceResult<(String, Option<u64>)> {
    meshwork_common::validate_request_id(&req.request_id)?;
    let author = handle("author", &req.author)?;
    post_text("text", &req.text)?;
    let reply_to = if req.reply_to.is_empty() { None } else { Some(post_id("reply_to", &req.reply_to)?) };
    Ok((author, reply_to))
}

/// Like, Unlike and Repost: (post id, user).
pub fn post_and_user(post: &str, user: &str) -> ServiceResult<(u64, String)> {
    Ok((post_id("post_id", post)?, handle("user", user)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<T: std::fmt::Debug>(r: ServiceResult<T>) -> String {
        match r {
            Err(ServiceError::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn handles_are_checked_and_folded() {
        assert_eq!(handle("h", "Ann_01").unwrap(), "ann_01");
        assert_eq!(field(handle("h", "ab")), "h");
        assert_eq!(field(handle("h", &"a".repeat(16))), "h");
        assert_eq!(field(handle("h", "a/b_c")), "h");
        assert_eq!(field(handle("h", "äbc")), "h");
    }

    #[test]
    fn posts_count_scalar_values() {
        assert!(post_text("t", &"é".repeat(280)).is_ok());
        assert_eq!(field(post_text("t", &"é".repeat(281))), "t");
        assert_eq!(field(post_text("t", "  \n")), "t");
        assert_eq!(field(post_text("t", "a\u{7}b")), "t");
        assert!(post_text("t", "line\nline").is_ok());
    }

    #[test]
    fn ids_and_self_follows() {
        assert_eq!(post_id("p", "42").unwrap(), 42);
        assert_eq!(field(post_id("p", "0")), "p");
        assert_eq!(field(post_id("p", "+4")), "p");
        assert_eq!(field(post_id("p", "x")), "p");
        assert_eq!(field(follow_pair("Ann", "ann")), "target");
    }
}
