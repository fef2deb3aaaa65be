require('not-a-real-dependency');
exports.handler = async () => 1;
