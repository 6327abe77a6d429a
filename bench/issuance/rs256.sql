SELECT oauth.auth_token('client_credentials', 'bench-rs256', 'benchsecret', 'read');
