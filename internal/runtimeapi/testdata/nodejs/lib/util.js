exports.handler = async () => 'subdir-cjs';
