// Sent with the session cookie after a sign-in link: replace the link (it holds the token) with
// the dashboard's own address, in the address bar and in the history.
'use strict';
location.replace('/');
