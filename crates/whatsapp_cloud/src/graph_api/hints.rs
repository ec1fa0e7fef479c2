//! One line per Meta error code on what to do about it, shown with a failed message.

/// One line, in the seed's words, on what to do about an error code.
pub fn hint(code: Option<i64>) -> Option<&'static str> {
    Some(match code? {
        131030 => {
            "recipient not in allowed list: the app is in development mode; add the number as a test recipient in WhatsApp -> API Setup, or complete Business Verification to go live"
        }
        131047 => {
            "more than 24 hours since the customer last wrote: only a template can reopen the conversation (use wa_send_template)"
        }
        0 | 190 => {
            "the access token has expired or is invalid: generate a permanent token for a System User and update the channel"
        }
        133010 => {
            "the business phone number is not registered with the Cloud API: register it in WhatsApp -> API Setup"
        }
        100 => "invalid parameter: the request was refused as malformed; check the recipient and the message fields",
        131026 => "message undeliverable: the recipient is not on WhatsApp or uses an old client",
        131021 => "the recipient is the business number itself",
        131031 => "the WhatsApp Business Account is locked: see Business Support",
        131056 => "too many messages to this customer in a short time (one per 6 seconds): it is retried",
        130429 | 80007 | 4 => "rate limit reached: it is retried",
        131053 => {
            "media upload error: the file does not match its MIME type, is too large, or its host refused Meta; tried a few times"
        }
        131049 => {
            "Meta limits how many marketing messages a customer gets: do not send this customer another marketing template for 24 hours"
        }
        131050 => {
            "the customer stopped marketing messages from this business: the contact is marked (wa_contacts.marketing_opt_out_at) and wa_send_template refuses marketing templates to them until they resume marketing messages themselves in WhatsApp"
        }
        131048 => {
            "spam rate limit: too many of this number's messages were blocked or reported; sending slows down and retries"
        }
        133016 => "too many register or deregister attempts for this number: wait before trying again",
        132000 | 132001 => {
            "the template does not exist in this language, is not approved, or got the wrong number of parameters"
        }
        368 => "the account is temporarily blocked for policy violations",
        // The Groups API's own codes (Meta's "Groups API Error Codes and Troubleshooting").
        131020 => "the group has only one member: Meta refuses messages to single-member groups",
        131041 => "group unknown: it does not exist or this business number is no longer a member",
        131059 => "the group list's paging cursor expired: start listing from the beginning again",
        131201 => "only some participants of the group operation succeeded: see error_data for which",
        131202 => "the same participant is listed twice in the request",
        131204 => "too many participants: a group has at most 8",
        131207 => "the group is suspended for violating WhatsApp's policies",
        131208 => "too many group operations from this number in a short time: it is retried",
        131209 => "a group's profile picture must be square",
        131210 => "a group's profile picture must be larger than 192 x 192 pixels",
        131211 => "this number has created as many groups as Meta allows (10,000)",
        131212 => "the participant is not a member of the group",
        _ => return None,
    })
}
