//! What the AWS edges ([`crate::iam`], [`crate::eks`]) share: reading an SDK failure before a
//! service's own error codes decide what it means.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// A service's error type, built from what every SDK failure carries.
pub trait ServiceError: Sized {
    /// The request never got an answer (connection, DNS, timeout).
    fn transport(operation: &'static str, message: String) -> Self;
    /// An answer came that the SDK could not read.
    fn bad_response(operation: &'static str, message: String) -> Self;
    /// The service answered with an error `code` (empty when it named none).
    fn from_code(operation: &'static str, code: String, message: String) -> Self;
}

/// Classifies one SDK failure of `operation` as `T`.
pub fn classify<T, E, R>(operation: &'static str, err: SdkError<E, R>) -> T
where
    T: ServiceError,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let message = err
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| error_text(&err));
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            T::transport(operation, message)
        }
        SdkError::ResponseError(_) => T::bad_response(operation, message),
        _ => T::from_code(operation, err.code().unwrap_or("").to_string(), message),
    }
}

/// An AWS failure as a person reads it, and the same text each time it recurs: every error of
/// the chain by its Display, a service's answer by its code and message alone. The SDK's own
/// renderings (`DisplayErrorContext`, which appends the Debug form, and `ErrorMetadata`'s
/// Display) carry the request id, new on every call: written into a status, each failed
/// check would be a new status, and each status write a new event to check on.
pub fn error_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(meta) = e.downcast_ref::<ErrorMetadata>() {
            let answer = match (meta.code(), meta.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                (None, Some(message)) => message.to_string(),
                (None, None) => "the service named no error".to_string(),
            };
            parts.push(answer);
            break;
        }
        parts.push(e.to_string());
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("service error")]
    struct Outer(#[source] ErrorMetadata);

    fn access_denied(request_id: &str) -> ErrorMetadata {
        ErrorMetadata::builder()
            .code("AccessDenied")
            .message("User: arn:aws:sts::1:assumed-role/op/x is not authorized to perform: sts:AssumeRole")
            .custom("aws_request_id", request_id)
            .build()
    }

    #[test]
    fn a_service_answer_reads_by_code_and_message_without_its_request_id() {
        let text = error_text(&Outer(access_denied("req-1")));
        assert_eq!(
            text,
            "service error: AccessDenied: User: arn:aws:sts::1:assumed-role/op/x is not authorized to perform: sts:AssumeRole"
        );
        // The same failure again, with another request id, reads the same.
        assert_eq!(error_text(&Outer(access_denied("req-2"))), text);
        // What the SDK's renderings would have written differs with every call.
        let sdk = |id| {
            aws_smithy_types::error::display::DisplayErrorContext(Outer(access_denied(id)))
                .to_string()
        };
        assert!(sdk("req-1").contains("req-1") && sdk("req-1") != sdk("req-2"));
    }

    #[test]
    fn a_chain_without_a_service_answer_reads_link_by_link() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "tcp connect error");
        #[derive(Debug, thiserror::Error)]
        #[error("dispatch failure")]
        struct Dispatch(#[source] std::io::Error);
        assert_eq!(
            error_text(&Dispatch(io)),
            "dispatch failure: tcp connect error"
        );
        let bare = ErrorMetadata::builder().build();
        assert_eq!(
            error_text(&Outer(bare)),
            "service error: the service named no error"
        );
    }
}
