//! The Graph API's `/{version}/{phone_number_id}/messages` endpoint: request bodies, answers
//! and errors, and what to do about each error; and the templates and media endpoints a channel
//! uses alongside.
//!
//! A newcomer's map: `bodies.rs` builds what is sent, `response.rs` reads what comes back,
//! `retry.rs` and `hints.rs` say what to do about an error (`media_retry.rs` about a media
//! download's); templates, their parameters, media, the callback data and the URLs each have
//! their own file.

mod actions;
mod bodies;
mod callback;
mod groups;
mod hints;
mod media;
mod media_retry;
mod response;
mod retry;
mod template_parameters;
mod templates;
mod urls;

pub use actions::{
    ActionKind, ActionOutcome, BLOCK_PARTLY_FAILED, CallAction, MAX_BLOCK_USERS, Method, TEMPLATE_CATEGORIES,
    block_users, call_action, create_template, parse_action_response,
};
pub use bodies::{
    GROUP_HINT, InvalidMessage, MAX_CAPTION_CHARS, MAX_CONTACTS, MAX_TEXT_CHARS, MEDIA_KINDS, contacts, interactive,
    location, mark_read, media, reaction, template, text, text_message,
};
pub use callback::{CALLBACK_PREFIX, callback_message_id, with_callback_data};
pub use groups::{
    JoinApproval, MAX_GROUP_DESCRIPTION_CHARS, MAX_GROUP_PARTICIPANTS, MAX_GROUP_SUBJECT_CHARS, create_group,
    join_requests, remove_participants, reset_invite_link,
};
pub use hints::hint;
pub use media::{MediaInfo, media_upload, parse_media_info, sha256_hex, sha256_matches};
pub use media_retry::{
    MEDIA_TOKEN_WAIT, MediaFailure, MediaNextStep, media_download_failure, media_lookup_failure, media_next_step,
};
pub use response::{GraphError, SendOutcome, parse_send_response};
pub use retry::{
    CREDENTIALS, FEW_ATTEMPTS, MAX_ATTEMPTS, PAIR_LIMIT, RETRIED_A_FEW_TIMES, Retry, THROTTLES, TRANSIENT, backoff,
    classify, is_outage, jitter,
};
pub use template_parameters::{
    given_body_parameters, header_and_button_problem, named_body_parameter_problem, template_body_parameters,
};
pub use templates::{Template, parse_templates};
pub use urls::{marketing_messages_url, media_info_url, media_upload_url, messages_url, templates_url};

use response::error_answer;
