//! What the AWS edges ([`crate::iam`], [`crate::eks`]) share: reading an SDK failure before a
//! service's own error codes decide what it means.

use aws_smithy_runtime_api::client::result::SdkError;
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
    R: std::fmt::Debug,
{
    let message = err
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| aws_smithy_types::error::display::DisplayErrorContext(&err).to_string());
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            T::transport(operation, message)
        }
        SdkError::ResponseError(_) => T::bad_response(operation, message),
        _ => T::from_code(operation, err.code().unwrap_or("").to_string(), message),
    }
}
