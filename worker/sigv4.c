/* placeholder: the AWS SigV4 signer is being written */
typedef int bb_placeholder_sigv4;
